// libvirt's XML as virtsnap reads it (a domain's disks and power settings,
// a checkpoint's disks, a backup job's socket) and as it writes it (the
// backup and checkpoint definitions it gives libvirt). Kept apart from the
// libvirt calls so both sides can be tested on XML text alone; written
// with libxml2's tree API, so any name comes out escaped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/product_code.h"

namespace virtsnap::hypervisor {

struct DomainDisk {
	std::string target;   // "vda": the disk id users and checkpoints know
	std::string alias;    // "virtio-disk0": QEMU's qdev id (running domains)
	std::string source;   // image file or block device
	std::string format;   // driver type: "qcow2", "raw"
	int bootOrder = -1;
	// <encryption format='luks'> (in <source>, or in <disk> as older
	// libvirt wrote it) and its passphrase <secret>'s uuid.
	std::string encryptionFormat;
	std::string encryptionSecret;
};

struct DomainDescription {
	std::string name;
	std::string uuid;
	std::vector<DomainDisk> disks; // device='disk' only: no cdroms, no floppies
	bool suspendToDiskEnabled = false;
	// From <product-codes><product-code>ID[:TYPE]</product-code>...
	// in the metadata namespace kProductCodesMetadataNamespace.
	std::vector<ProductCode> productCodes;
};

inline constexpr const char *kProductCodesMetadataNamespace = "https://virtsnap.example/product-codes";

Result<DomainDescription> parseDomainXml(const std::string &xml);

// The <policy><tag key="K" value="V"/>...</policy> element a domain opts
// in to lifecycle policies with (namespace kPolicyMetadataNamespace), as
// virDomainGetMetadata gives it: its tags, in order.
inline constexpr const char *kPolicyMetadataNamespace = "https://virtsnap.example/policy";
Result<std::vector<std::pair<std::string, std::string>>> parsePolicyMetadata(const std::string &xml);

struct CheckpointDescription {
	std::string name;
	std::vector<std::string> disks; // targets with checkpoint='bitmap'
};

Result<CheckpointDescription> parseCheckpointXml(const std::string &xml);

// What virtsnap reads of a running backup job: whose it is.
struct BackupDescription {
	std::string socket; // the NBD server's unix socket
};

Result<BackupDescription> parseBackupXml(const std::string &xml);

struct CheckpointDisk {
	std::string target;
	bool bitmap = false; // checkpoint='bitmap' (a bitmap named after the checkpoint), else 'no'
};

struct CheckpointDefinition {
	std::string name;
	std::vector<CheckpointDisk> disks;
	// Set when a checkpoint is redefined over bitmaps the disks hold
	// already (seconds since the epoch); each bitmap is then named too.
	std::optional<int64_t> creationTime;
};

// <domaincheckpoint>, for virDomainBackupBegin or (redefined)
// virDomainCheckpointCreateXML.
std::string checkpointXml(const CheckpointDefinition &checkpoint);

struct BackupDisk {
	std::string target;
	bool backup = false; // false: backup='no', and nothing below applies
	std::string exportName;
	std::string incremental;  // the checkpoint changes are read since; "" = full
	std::string exportBitmap; // incremental only: the bitmap the export offers
	std::string scratchFile;
	// The libvirt secret the scratch is LUKS-encrypted with ("": plain).
	std::string scratchSecret;
};

// A pull-mode <domainbackup> whose NBD server listens on unix `socket`.
std::string backupXml(const std::string &socket, const std::vector<BackupDisk> &disks);

} // namespace virtsnap::hypervisor
