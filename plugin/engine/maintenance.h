// Keeping a store: creating it, checking it, reclaiming its space, and
// deleting snapshots. Engine operations, so that nothing above the engine
// reaches into the store's files.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "store/gc.h"
#include "store/verify.h"

namespace virtsnap::engine {

inline constexpr uint32_t kDefaultChunkSize = store::Store::kDefaultChunkSize;

struct StoreCreated {
	bool keyCreated = false; // the key file was absent and is new
	uint32_t chunkSize = 0;
	store::Compression compression;
};

// Creates the store at a URL (a directory, rados://, s3://), and its key
// file if absent. StoreAlreadyInitialized where one is.
Result<StoreCreated> initStore(const std::string &url, const store::BackendSettings &settings,
			       const std::filesystem::path &keyFile, uint32_t chunkSize,
			       store::Compression compression = {});

// Every snapshot in the store, by start time.
Result<std::vector<store::Manifest>> listSnapshots(store::Store &store);

// A completed snapshot stops existing: its manifest goes, its chunks stay
// until gc finds nothing else needs them. InvalidSnapshot.NotFound when it
// was not there, SnapshotLocked when it is locked (snapshot_locks.h).
// Where a Recycle Bin rule matches, it goes into the bin instead
// (recycle_bin.h), and the result says until when.
struct Deletion {
	std::optional<int64_t> recycleBinExitTime; // unix seconds, the store's clock
};
Result<Deletion> deleteSnapshot(store::Store &store, const std::string &snapshotId);

// Re-reads, decrypts and re-hashes what the snapshots need (all when
// `snapshotIds` is empty). Damage is in the report.
Result<store::VerifyReport> verify(store::Store &store, const std::vector<std::string> &snapshotIds);

// Mark and sweep (store/gc.h); the caller keeps captures out meanwhile.
Result<store::GcReport> collectGarbage(store::Store &store, const store::GcOptions &options);

} // namespace virtsnap::engine
