#include "maintenance.h"

#include "recycle_bin.h"
#include "snapshot_exports.h"
#include "snapshot_locks.h"
#include "store/held_manifests.h"

namespace virtsnap::engine {

Result<StoreCreated> initStore(const std::string &url, const store::BackendSettings &settings,
			       const std::filesystem::path &keyFile, uint32_t chunkSize, store::Compression compression)
{
	StoreCreated created;
	created.chunkSize = chunkSize;
	created.compression = compression;
	VS_ASSIGN(auto backend, store::openBackend(url, settings));
	VS_TRY(store::Store::init(*backend, keyFile, chunkSize, &created.keyCreated, compression));
	return created;
}

Result<std::vector<store::Manifest>> listSnapshots(store::Store &store)
{
	return store.listManifests();
}

Result<Deletion> deleteSnapshot(store::Store &store, const std::string &snapshotId)
{
	VS_TRY(checkNotLocked(store, snapshotId));
	VS_TRY(checkNotServed(store, snapshotId));
	auto m = store.getManifest(snapshotId);
	// A manifest that does not open cannot go into the bin, but may go.
	if (!m && m.error().code != errc::kCorrupt)
		return std::unexpected(m.error());
	std::optional<BinEntry> recycled;
	if (m) {
		VS_ASSIGN(recycled, recycle(store, *m));
	}
	if (!recycled)
		VS_TRY(store.deleteManifest(snapshotId));
	// A lock another host made between the check above and the removal
	// holds: the snapshot comes back from the lock's copy of its manifest.
	if (auto locked = checkNotLocked(store, snapshotId); !locked) {
		VS_TRY(restoreLockedManifest(store, snapshotId));
		if (recycled)
			VS_TRY(store.removeRecord(store::kRecycleBinRecords, snapshotId));
		return std::unexpected(locked.error());
	}
	// Likewise an export another host started meanwhile.
	if (auto served = checkNotServed(store, snapshotId); !served) {
		VS_TRY(restoreServedManifest(store, snapshotId));
		if (recycled)
			VS_TRY(store.removeRecord(store::kRecycleBinRecords, snapshotId));
		return std::unexpected(served.error());
	}
	Deletion d;
	if (recycled)
		d.recycleBinExitTime = recycled->exitTime;
	return d;
}

Result<store::VerifyReport> verify(store::Store &store, const std::vector<std::string> &snapshotIds)
{
	return store::verifySnapshots(store, snapshotIds);
}

Result<store::GcReport> collectGarbage(store::Store &store, const store::GcOptions &options)
{
	return store::collectGarbage(store, options);
}

} // namespace virtsnap::engine
