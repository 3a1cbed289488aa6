// EBS snapshot locks: lock-snapshot, unlock-snapshot and
// describe-locked-snapshots. A lock is a sealed record in the store
// (store/held_manifests.h) holding a copy of the snapshot's manifest until
// the lock expires: deleteSnapshot refuses a locked snapshot
// (SnapshotLocked), and gc keeps its chunks even when its manifest is
// removed behind virtsnap's back. Times are the store's clock, so that
// every host sharing the store agrees on when a lock ends.
//
// On S3 with Object Lock the backend enforces the lock too
// (store/snapshot_retention.h): the snapshot's objects and its lock record
// are retained until the lock expires, in its mode, so that the store's
// credentials alone destroy nothing. A lock shortened or removed leaves
// that retention to run out: S3 shortens one only with a governance
// bypass, and packs are shared with other locked snapshots.
//
// The modes, as EBS has them: a governance lock may be changed or removed
// at any time; a compliance lock may be during its cool-off period only,
// and after it can only be extended. Who may lock and unlock at all is
// the caller's business (virtsnapd: root).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace virtsnap::engine {

struct SnapshotLock {
	std::string snapshotId;
	std::string ownerId;
	std::string mode;            // "governance" | "compliance"
	int64_t createdOn = 0;       // unix seconds, the store's clock
	int64_t durationStartTime = 0;
	int64_t expiresOn = 0;
	int64_t lockDurationDays = 0; // 0 when an expiration date was given
	int64_t coolOffHours = 0;     // compliance only; 0: none
	int64_t coolOffExpiresOn = 0;
	// The store's backend retains the snapshot's objects until expiresOn
	// (S3 Object Lock); false: only virtsnap enforces the lock.
	bool enforcedByStore = false;

	// "governance", "compliance-cooloff", "compliance" or "expired".
	std::string state(int64_t now) const;
};

struct LockRequest {
	std::string snapshotId;
	std::string mode;                      // "governance" | "compliance"
	std::optional<int64_t> lockDurationDays; // 1 to 36500; or
	std::optional<std::chrono::system_clock::time_point> expirationDate;
	std::optional<int64_t> coolOffHours;   // 1 to 72, compliance only
};

// Locks a completed snapshot, or changes its lock as its mode allows;
// `now` is set to the store's time.
Result<SnapshotLock> lockSnapshot(store::Store &store, const LockRequest &request, int64_t &now);
// Removes a governance lock, or a compliance lock in its cool-off.
Result<SnapshotLock> unlockSnapshot(store::Store &store, const std::string &snapshotId);
// Every lock (expired ones too, until gc removes them), or those
// of the snapshots named; `now` is set to the store's time.
Result<std::vector<SnapshotLock>> describeLocks(store::Store &store, const std::vector<std::string> &snapshotIds,
						int64_t &now);
// SnapshotLocked when the snapshot has a lock that has not expired.
Result<void> checkNotLocked(store::Store &store, const std::string &snapshotId);
// Puts the snapshot's manifest back from its lock's copy (a deletion that
// raced a lock from another host).
Result<void> restoreLockedManifest(store::Store &store, const std::string &snapshotId);

} // namespace virtsnap::engine
