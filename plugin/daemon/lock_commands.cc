// lock-snapshot, unlock-snapshot and describe-locked-snapshots
// (engine/snapshot_locks.h).
#include <algorithm>

#include "access.h"
#include "core/ids.h"
#include "ec2_output.h"
#include "engine/snapshot_locks.h"
#include "handlers.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

Json lockJson(const engine::SnapshotLock &l, int64_t now)
{
	Json j = Json::object();
	j.set("OwnerId", Json::string(l.ownerId));
	j.set("SnapshotId", Json::string(l.snapshotId));
	j.set("LockState", Json::string(l.state(now)));
	if (l.lockDurationDays > 0)
		j.set("LockDuration", Json::integer(l.lockDurationDays));
	if (l.coolOffHours > 0) {
		j.set("CoolOffPeriod", Json::integer(l.coolOffHours));
		j.set("CoolOffPeriodExpiresOn", timeJson(l.coolOffExpiresOn));
	}
	j.set("LockCreatedOn", timeJson(l.createdOn));
	j.set("LockDurationStartTime", timeJson(l.durationStartTime));
	j.set("LockExpiresOn", timeJson(l.expiresOn));
	// Not EBS's: whether the store itself (S3 Object Lock) holds to the
	// lock, or only virtsnap does.
	j.set("EnforcedByStore", Json::boolean(l.enforcedByStore));
	return j;
}

bool matches(const std::vector<catalog::Filter> &filters, const engine::SnapshotLock &l, int64_t now)
{
	for (const catalog::Filter &f : filters)
		if (std::find(f.values.begin(), f.values.end(), l.state(now)) == f.values.end())
			return false;
	return true;
}

} // namespace

Result<Reply> lockSnapshot(Context &ctx, const Call &call)
{
	VS_TRY(requireRoot(call));
	VS_ASSIGN(engine::LockRequest req, parseLock(call.args));
	// The catalog knows a pending or failed snapshot, which has no manifest
	// to hold yet; the store alone knows another host's completed one.
	// Only the owning account locks it.
	VS_ASSIGN(auto row, ownedSnapshot(ctx, call, req.snapshotId));
	VS_TRY(requireCompleted(row, "locked"));
	int64_t now = 0;
	VS_ASSIGN(engine::SnapshotLock lock, engine::lockSnapshot(*ctx.store, req, now));
	return ok(lockJson(lock, now));
}

Result<Reply> unlockSnapshot(Context &ctx, const Call &call)
{
	VS_TRY(requireRoot(call));
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	if (auto row = ctx.catalog->getSnapshot(id); row && *row && ownerOf(ctx, **row) != call.accountId)
		return fail(errc::kSnapshotNotFound, "snapshot " + id + " does not exist");
	VS_ASSIGN(engine::SnapshotLock lock, engine::unlockSnapshot(*ctx.store, id));
	Json j = Json::object();
	j.set("SnapshotId", Json::string(lock.snapshotId));
	return ok(j);
}

Result<Reply> describeLockedSnapshots(Context &ctx, const Call &call)
{
	std::vector<catalog::Filter> filters;
	for (const std::string &spec : call.args.all("filter")) {
		VS_ASSIGN(catalog::Filter f, parseFilter(spec));
		if (f.name != "lock-state")
			return fail(errc::kInvalidParameterValue,
				    "--filter Name=" + f.name + " is not known here (lock-state is)");
		filters.push_back(std::move(f));
	}
	for (const std::string &id : call.args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	int64_t now = 0;
	VS_ASSIGN(auto locks, engine::describeLocks(*ctx.store, call.args.all("snapshot-id"), now));
	Json list = Json::array();
	for (const engine::SnapshotLock &l : locks) {
		// Another account's locks are not listed (a lock whose snapshot
		// is gone: the default account's to see).
		VS_ASSIGN(auto row, ctx.catalog->getSnapshot(l.snapshotId));
		if (row ? ownerOf(ctx, *row) != call.accountId : call.accountId != ctx.defaultAccount)
			continue;
		if (matches(filters, l, now))
			list.append(lockJson(l, now));
	}
	Json j = Json::object();
	j.set("Snapshots", list);
	return ok(j);
}

} // namespace virtsnap::daemon
