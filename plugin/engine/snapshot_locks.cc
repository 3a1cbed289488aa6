#include "snapshot_locks.h"

#include <algorithm>

#include "core/ids.h"
#include "store/held_manifests.h"
#include "store/snapshot_retention.h"

namespace virtsnap::engine {

namespace {

using store::kSnapshotLockRecords;

constexpr int64_t kDay = 86400;
constexpr int64_t kMaxLockDays = 36500;

std::string timeText(int64_t unixSeconds)
{
	return isoTime(std::chrono::system_clock::time_point(std::chrono::seconds(unixSeconds)));
}

Json lockJson(const SnapshotLock &l)
{
	Json j = Json::object();
	j.set("SnapshotId", Json::string(l.snapshotId));
	j.set("OwnerId", Json::string(l.ownerId));
	j.set("LockMode", Json::string(l.mode));
	j.set("LockCreatedOn", Json::integer(l.createdOn));
	j.set("LockDurationStartTime", Json::integer(l.durationStartTime));
	j.set("LockExpiresOn", Json::integer(l.expiresOn));
	j.set("LockDuration", Json::integer(l.lockDurationDays));
	j.set("CoolOffPeriod", Json::integer(l.coolOffHours));
	j.set("CoolOffPeriodExpiresOn", Json::integer(l.coolOffExpiresOn));
	j.set("EnforcedByStore", Json::boolean(l.enforcedByStore));
	return j;
}

Result<SnapshotLock> parseLock(const Json &j, const std::string &where)
{
	SnapshotLock l;
	l.snapshotId = j.getString("SnapshotId").value_or("");
	l.ownerId = j.getString("OwnerId").value_or("");
	l.mode = j.getString("LockMode").value_or("");
	l.createdOn = j.getInt("LockCreatedOn").value_or(0);
	l.durationStartTime = j.getInt("LockDurationStartTime").value_or(0);
	l.expiresOn = j.getInt("LockExpiresOn").value_or(0);
	l.lockDurationDays = j.getInt("LockDuration").value_or(0);
	l.coolOffHours = j.getInt("CoolOffPeriod").value_or(0);
	l.coolOffExpiresOn = j.getInt("CoolOffPeriodExpiresOn").value_or(0);
	l.enforcedByStore = j.getBool("EnforcedByStore").value_or(false);
	if (!isSnapshotId(l.snapshotId) || (l.mode != "governance" && l.mode != "compliance"))
		return fail(errc::kCorrupt, where + " is not a snapshot lock");
	return l;
}

Result<std::optional<SnapshotLock>> loadLock(store::Store &store, const std::string &snapshotId)
{
	VS_ASSIGN(auto json, store::getJsonRecord(store, kSnapshotLockRecords, snapshotId));
	if (!json)
		return std::optional<SnapshotLock>();
	VS_ASSIGN(SnapshotLock l, parseLock(*json, "the lock record of " + snapshotId));
	return std::optional<SnapshotLock>(std::move(l));
}

Result<void> checkRequest(const LockRequest &r, int64_t now)
{
	if (r.mode != "governance" && r.mode != "compliance")
		return fail(errc::kInvalidParameterValue,
			    "--lock-mode '" + r.mode + "' must be governance or compliance");
	if (r.lockDurationDays.has_value() == r.expirationDate.has_value())
		return fail(errc::kInvalidParameterValue, "give one of --lock-duration and --expiration-date");
	if (r.lockDurationDays && (*r.lockDurationDays < 1 || *r.lockDurationDays > kMaxLockDays))
		return fail(errc::kInvalidParameterValue,
			    "--lock-duration must be from 1 to " + std::to_string(kMaxLockDays) + " days");
	if (r.expirationDate) {
		int64_t at = store::unixSeconds(*r.expirationDate);
		if (at <= now || at > now + kMaxLockDays * kDay)
			return fail(errc::kInvalidParameterValue,
				    "--expiration-date " + timeText(at) + " must be in the future, within " +
					    std::to_string(kMaxLockDays) + " days (the store's time is " + timeText(now) + ")");
	}
	if (r.coolOffHours && r.mode != "compliance")
		return fail(errc::kInvalidParameterValue, "--cool-off-period is for compliance mode only");
	if (r.coolOffHours && (*r.coolOffHours < 1 || *r.coolOffHours > 72))
		return fail(errc::kInvalidParameterValue, "--cool-off-period must be from 1 to 72 hours");
	return {};
}

// What a compliance lock past its cool-off still allows: a later expiry
// in the same mode, nothing else.
Result<void> checkChangeAllowed(const SnapshotLock &old, const SnapshotLock &next, const LockRequest &r,
				int64_t now)
{
	if (old.state(now) != "compliance")
		return {};
	std::string why = "snapshot " + old.snapshotId + " is locked in compliance mode until " +
			  timeText(old.expiresOn) + " and past its cool-off: ";
	if (r.mode != "compliance")
		return fail(errc::kSnapshotLocked, why + "its mode cannot change");
	if (r.coolOffHours)
		return fail(errc::kSnapshotLocked, why + "it has no cool-off period to set");
	if (next.expiresOn < old.expiresOn)
		return fail(errc::kSnapshotLocked, why + "its lock can only be extended");
	return {};
}

// The backend's own retention, where it has one, for the snapshot's objects
// before the record is written (a lock it lists is one the backend holds
// to), and for the record after.
Result<bool> retainForLock(store::Store &store, const store::Manifest &m, const SnapshotLock &l)
{
	VS_ASSIGN(bool retains, store.backend().retains());
	if (!retains)
		return false;
	auto mode = l.mode == "compliance" ? store::RetentionMode::Compliance : store::RetentionMode::Governance;
	auto until = std::chrono::system_clock::time_point(std::chrono::seconds(l.expiresOn));
	auto retained = store::retainSnapshot(store, m, mode, until);
	if (!retained)
		return fail(retained.error().code, "the lock of " + l.snapshotId + " was not made: " +
							   retained.error().message);
	return true;
}

Result<void> retainLockRecord(store::Store &store, const SnapshotLock &l)
{
	auto mode = l.mode == "compliance" ? store::RetentionMode::Compliance : store::RetentionMode::Governance;
	auto until = std::chrono::system_clock::time_point(std::chrono::seconds(l.expiresOn));
	auto retained = store.backend().retain(store::recordName(kSnapshotLockRecords, l.snapshotId), mode, until);
	if (!retained)
		return fail(retained.error().code,
			    "snapshot " + l.snapshotId + " is locked, but its lock record is not retained by " +
				    store.describe() + " (" + retained.error().message + "): lock it again");
	return {};
}

} // namespace

std::string SnapshotLock::state(int64_t now) const
{
	if (now >= expiresOn)
		return "expired";
	if (mode == "governance")
		return "governance";
	return now < coolOffExpiresOn ? "compliance-cooloff" : "compliance";
}

Result<SnapshotLock> lockSnapshot(store::Store &store, const LockRequest &r, int64_t &now)
{
	VS_TRY(checkSnapshotId(r.snapshotId));
	// No gc meanwhile: it removes expired lock records, and this one may
	// be about to become live again.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "lock of " + r.snapshotId));
	VS_ASSIGN(now, store::storeTime(store));
	VS_TRY(checkRequest(r, now));
	VS_ASSIGN(store::Manifest m, store.getManifest(r.snapshotId));
	VS_ASSIGN(auto old, loadLock(store, r.snapshotId));
	bool fresh = !old || old->state(now) == "expired";

	SnapshotLock l = fresh ? SnapshotLock{} : *old;
	l.snapshotId = r.snapshotId;
	l.ownerId = m.ownerId;
	if (fresh)
		l.createdOn = l.durationStartTime = now;
	l.lockDurationDays = r.lockDurationDays.value_or(0);
	l.expiresOn = r.lockDurationDays ? l.durationStartTime + *r.lockDurationDays * kDay
					 : store::unixSeconds(*r.expirationDate);
	// A cool-off starts when a compliance lock is made (or a governance
	// one becomes compliance); during it, it may be set anew.
	bool intoCompliance = r.mode == "compliance" && (fresh || l.mode != "compliance");
	if (r.mode == "governance") {
		l.coolOffHours = l.coolOffExpiresOn = 0;
	} else if (intoCompliance || (r.coolOffHours && old->state(now) == "compliance-cooloff")) {
		// Set anew, a cool-off still counts from when it began.
		int64_t from = intoCompliance ? now : old->coolOffExpiresOn - old->coolOffHours * 3600;
		l.coolOffHours = r.coolOffHours.value_or(0);
		l.coolOffExpiresOn = from + l.coolOffHours * 3600;
	}
	if (!fresh)
		VS_TRY(checkChangeAllowed(*old, l, r, now));
	if (l.expiresOn <= now)
		return fail(errc::kInvalidParameterValue, "the lock would end at " + timeText(l.expiresOn) +
								   ", before the store's time " + timeText(now));
	l.mode = r.mode;
	VS_ASSIGN(l.enforcedByStore, retainForLock(store, m, l));
	Json record = lockJson(l);
	store::setHeldManifest(record, m, l.expiresOn);
	VS_TRY(store.putRecord(kSnapshotLockRecords, l.snapshotId, record.dump()));
	if (l.enforcedByStore)
		VS_TRY(retainLockRecord(store, l));
	return l;
}

Result<SnapshotLock> unlockSnapshot(store::Store &store, const std::string &snapshotId)
{
	VS_TRY(checkSnapshotId(snapshotId));
	VS_ASSIGN(int64_t now, store::storeTime(store));
	VS_ASSIGN(auto lock, loadLock(store, snapshotId));
	if (!lock || lock->state(now) == "expired")
		return fail(errc::kIncorrectState, "snapshot " + snapshotId + " is not locked");
	if (lock->state(now) == "compliance")
		return fail(errc::kSnapshotLocked, "snapshot " + snapshotId +
							   " is locked in compliance mode and past its cool-off: it "
							   "cannot be unlocked before " +
							   timeText(lock->expiresOn));
	VS_TRY(store.removeRecord(kSnapshotLockRecords, snapshotId));
	return std::move(*lock);
}

Result<std::vector<SnapshotLock>> describeLocks(store::Store &store, const std::vector<std::string> &snapshotIds,
						int64_t &now)
{
	VS_ASSIGN(now, store::storeTime(store));
	VS_ASSIGN(auto ids, store.listRecordIds(kSnapshotLockRecords));
	std::vector<SnapshotLock> out;
	for (const std::string &id : ids) {
		if (!snapshotIds.empty() && std::find(snapshotIds.begin(), snapshotIds.end(), id) == snapshotIds.end())
			continue;
		VS_ASSIGN(auto lock, loadLock(store, id));
		if (lock)
			out.push_back(std::move(*lock));
	}
	return out;
}

Result<void> checkNotLocked(store::Store &store, const std::string &snapshotId)
{
	VS_ASSIGN(auto lock, loadLock(store, snapshotId));
	if (!lock)
		return {};
	VS_ASSIGN(int64_t now, store::storeTime(store));
	std::string state = lock->state(now);
	if (state == "expired")
		return {};
	return fail(errc::kSnapshotLocked, "snapshot " + snapshotId + " is locked (" + state + ") until " +
						   timeText(lock->expiresOn) +
						   (state == "governance" || state == "compliance-cooloff"
							    ? ": unlock it first (unlock-snapshot)"
							    : ""));
}

Result<void> restoreLockedManifest(store::Store &store, const std::string &snapshotId)
{
	VS_ASSIGN(auto json, store::getJsonRecord(store, kSnapshotLockRecords, snapshotId));
	if (!json)
		return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " has no lock to restore it from");
	VS_ASSIGN(store::HeldManifest held, store::parseHeldManifest(*json, "the lock record of " + snapshotId));
	auto put = store.putManifest(held.manifest);
	if (!put && put.error().code != errc::kTargetExists)
		return put;
	return {};
}

} // namespace virtsnap::engine
