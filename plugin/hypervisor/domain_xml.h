// What virtsnap reads from libvirt's XML: a domain's disks and power
// settings, and a checkpoint's disks. Parsing is kept
// apart from the libvirt calls so it can be tested on XML text alone.
#pragma once

#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::hypervisor {

struct DomainDisk {
	std::string target;   // "vda": the disk id users and checkpoints know
	std::string alias;    // "virtio-disk0": QEMU's qdev id (running domains)
	std::string source;   // image file or block device
	std::string format;   // driver type: "qcow2", "raw"
	int bootOrder = -1;
};

struct DomainDescription {
	std::string name;
	std::string uuid;
	std::vector<DomainDisk> disks; // device='disk' only: no cdroms, no floppies
	bool suspendToDiskEnabled = false;
};

Result<DomainDescription> parseDomainXml(const std::string &xml);

struct CheckpointDescription {
	std::string name;
	std::vector<std::string> disks; // targets with checkpoint='bitmap'
};

Result<CheckpointDescription> parseCheckpointXml(const std::string &xml);

} // namespace virtsnap::hypervisor
