// A snapshot's manifest (FORMAT.md, "Manifest"): everything needed to list,
// describe and restore one snapshot, sealed with its key domain.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "chunk_id.h"
#include "core/error.h"
#include "core/product_code.h"

namespace virtsnap::store {

using Tags = std::vector<std::pair<std::string, std::string>>;

// What the snapshot was taken of. instanceKey is what VolumeId derives from.
struct VolumeIdentity {
	std::string instanceKey;  // "uuid:...", "name:..." or "socket:..."
	std::string instanceName;
	std::string diskId;       // qdev id ("vda") or node name
	std::string format;       // "qcow2", "raw", ...
};

struct CaptureStats {
	uint64_t bytesRead = 0;    // from the disk
	uint64_t bytesAdded = 0;   // to the store (blobs of new chunks and pages)
	uint64_t chunksNew = 0;
	uint64_t chunksReused = 0; // read, but already in the store
	uint64_t zeroChunks = 0;   // read or known zero: not stored
	uint64_t bytesTransferred = 0; // a copy: chunk bytes read from its source and re-sealed
};

// Where a copy came from (copy-snapshot). The store is named by its
// store_id (config.json), which no spelling of its URL changes; the URL is
// for people, without any credential.
struct CopySource {
	std::string snapshotId;
	std::string storeId;
	std::string storeUrl; // "" when the copy is in its source's store
};

struct Manifest {
	std::string snapshotId;
	std::string volumeId;
	VolumeIdentity volume;
	std::string parentSnapshotId; // whose index this one was built from; "" when full
	std::string startTime;        // ISO 8601 UTC
	std::string completionTime;
	uint64_t volumeSize = 0;      // bytes
	uint32_t chunkSize = 0;
	uint32_t pageEntries = 0;
	std::vector<ChunkId> indexPages;
	std::string description;
	std::string name;
	Tags tags;
	std::string consistency = "crash"; // "crash" | "application"
	std::string captureMode;           // "full" | "incremental"
	std::string captureReason;         // why full, when it was
	int64_t freezeMillis = -1;         // guest frozen for this long; -1: no freeze
	std::string quiesceNote;           // why crash-consistent when a freeze was wanted
	std::string snapshotSetId;         // shared by the snapshots of one create-snapshots
	std::string ownerId;               // who asked for it (the requesting user's uid)
	// The owning account (12 digits); empty in manifests written before
	// accounts existed: those belong to the store's default account.
	std::string accountId;
	std::string bitmapName;            // the dirty bitmap that tracks changes since this snapshot
	std::vector<ProductCode> productCodes; // the volume's, when it was taken
	// The volume was encrypted (a LUKS image, or marked by modify-volume):
	// its restores must be encrypted too. kmsKeyId names the key whose
	// domain seals its chunks and index pages (Store::codecOf); "" when
	// not encrypted. Absent ("encrypted" false) in manifests from before
	// encrypted volumes.
	bool encrypted = false;
	std::string kmsKeyId;
	CopySource source;                 // a copy's origin; empty snapshotId when not a copy
	CaptureStats stats;
};

// With `zeroRuns`, a run of zero index pages is written as its length
// (manifest version 2), which only readers of store format version 3 read;
// the store passes it for its own manifests (FORMAT.md, "Manifest").
// Without, version 1: what records that carry a manifest use too.
std::string serializeManifest(const Manifest &m, bool zeroRuns = false);
Result<Manifest> parseManifest(std::string_view json);

} // namespace virtsnap::store
