#include "maintenance.h"

#include "snapshot_locks.h"
#include "store/held_manifests.h"

namespace virtsnap::engine {

Result<StoreCreated> initStore(const std::string &url, const store::BackendSettings &settings,
			       const std::filesystem::path &keyFile, uint32_t chunkSize)
{
	StoreCreated created;
	created.chunkSize = chunkSize;
	VS_ASSIGN(auto backend, store::openBackend(url, settings));
	VS_TRY(store::Store::init(*backend, keyFile, chunkSize, &created.keyCreated));
	return created;
}

Result<std::vector<store::Manifest>> listSnapshots(store::Store &store)
{
	return store.listManifests();
}

Result<void> deleteSnapshot(store::Store &store, const std::string &snapshotId)
{
	VS_TRY(checkNotLocked(store, snapshotId));
	VS_TRY(store.deleteManifest(snapshotId));
	// An expired lock is kept for describe-locked-snapshots while its
	// snapshot lives, not after.
	return store.removeRecord(store::kSnapshotLockRecords, snapshotId);
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
