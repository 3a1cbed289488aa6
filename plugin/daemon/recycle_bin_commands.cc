// The Recycle Bin (engine/recycle_bin.h): create-rule, list-rules,
// get-rule, update-rule, delete-rule, lock-rule, unlock-rule,
// list-snapshots-in-recycle-bin and restore-snapshot-from-recycle-bin.
// Every one acts for the caller's account (access.h): a user mapped to an
// account manages that account's rules and bin, root the default
// account's (or --account's).
#include <algorithm>

#include "access.h"
#include "catalog/catalog.h"
#include "catalog_rows.h"
#include "catalog_sync.h"
#include "core/ids.h"
#include "ec2_output.h"
#include "engine/recycle_bin.h"
#include "handlers.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

Result<void> checkResourceType(const Arguments &args)
{
	std::string type = args.get("resource-type", "EBS_SNAPSHOT");
	if (type != "EBS_SNAPSHOT")
		return fail(errc::kInvalidParameterValue, "--resource-type '" + type + "': only EBS_SNAPSHOT is kept here");
	return {};
}

Json tagsJson(const store::Tags &tags)
{
	Json list = Json::array();
	for (const auto &[k, v] : tags) {
		Json t = Json::object();
		t.set("ResourceTagKey", Json::string(k));
		if (!v.empty())
			t.set("ResourceTagValue", Json::string(v));
		list.append(t);
	}
	return list;
}

Json ruleJson(const engine::RetentionRule &r, int64_t now, bool whole)
{
	Json j = Json::object();
	j.set("Identifier", Json::string(r.identifier));
	j.set("Description", Json::string(r.description));
	Json period = Json::object();
	period.set("RetentionPeriodValue", Json::integer(r.retentionDays));
	period.set("RetentionPeriodUnit", Json::string("DAYS"));
	j.set("RetentionPeriod", period);
	j.set("LockState", Json::string(r.lockState(now)));
	if (!whole)
		return j;
	j.set("ResourceType", Json::string("EBS_SNAPSHOT"));
	j.set("ResourceTags", tagsJson(r.resourceTags));
	j.set("Status", Json::string("available"));
	if (r.lock && r.lockState(now) != "unlocked") {
		Json delay = Json::object();
		delay.set("UnlockDelayValue", Json::integer(r.lock->unlockDelayDays));
		delay.set("UnlockDelayUnit", Json::string("DAYS"));
		Json lock = Json::object();
		lock.set("UnlockDelay", delay);
		j.set("LockConfiguration", lock);
		if (r.lockState(now) == "pending_unlock")
			j.set("LockEndTime", timeJson(r.lock->lockEndTime));
	}
	return j;
}

Result<Reply> oneRule(const Result<engine::RetentionRule> &r, int64_t now)
{
	if (!r)
		return std::unexpected(r.error());
	return ok(ruleJson(*r, now, true));
}

Json binEntryJson(const engine::BinEntry &e)
{
	Json j = Json::object();
	j.set("SnapshotId", Json::string(e.manifest.snapshotId));
	j.set("RecycleBinEnterTime", timeJson(e.enterTime));
	j.set("RecycleBinExitTime", timeJson(e.exitTime));
	j.set("Description", Json::string(e.manifest.description));
	j.set("VolumeId", Json::string(e.manifest.volumeId));
	return j;
}

} // namespace

Result<Reply> createRule(Context &ctx, const Call &call)
{
	VS_TRY(checkResourceType(call.args));
	engine::RetentionRule rule;
	VS_ASSIGN(std::string period, call.args.require("retention-period"));
	VS_ASSIGN(rule.retentionDays, parseRetentionPeriod(period));
	VS_ASSIGN(rule.resourceTags, parseResourceTags(call.args.all("resource-tags")));
	rule.description = call.args.get("description");
	rule.ownerId = call.accountId;
	VS_ASSIGN(engine::RetentionRule made, engine::createRule(*ctx.store, rule));
	return ok(ruleJson(made, 0, true));
}

Result<Reply> listRules(Context &ctx, const Call &call)
{
	VS_TRY(checkResourceType(call.args));
	std::string state = call.args.get("lock-state");
	int64_t now = 0;
	VS_ASSIGN(auto rules, engine::listRules(*ctx.store, call.accountId, now));
	Json list = Json::array();
	for (const engine::RetentionRule &r : rules)
		if (state.empty() || r.lockState(now) == state)
			list.append(ruleJson(r, now, false));
	Json j = Json::object();
	j.set("Rules", list);
	return ok(j);
}

Result<Reply> getRule(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("identifier"));
	int64_t now = 0;
	auto r = engine::getRule(*ctx.store, call.accountId, id, now);
	return oneRule(r, now);
}

Result<Reply> updateRule(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("identifier"));
	engine::RuleChange change;
	if (call.args.has("retention-period")) {
		VS_ASSIGN(change.retentionDays, parseRetentionPeriod(call.args.get("retention-period")));
	}
	if (call.args.has("resource-tags")) {
		VS_ASSIGN(change.resourceTags, parseResourceTags(call.args.all("resource-tags")));
	}
	if (call.args.has("description"))
		change.description = call.args.get("description");
	int64_t now = 0;
	auto r = engine::updateRule(*ctx.store, call.accountId, id, change, now);
	return oneRule(r, now);
}

Result<Reply> deleteRule(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("identifier"));
	VS_TRY(engine::deleteRule(*ctx.store, call.accountId, id));
	return ok(Json::object());
}

Result<Reply> lockRule(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("identifier"));
	VS_ASSIGN(std::string config, call.args.require("lock-configuration"));
	VS_ASSIGN(int64_t days, parseUnlockDelay(config));
	int64_t now = 0;
	auto r = engine::lockRule(*ctx.store, call.accountId, id, days, now);
	return oneRule(r, now);
}

Result<Reply> unlockRule(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("identifier"));
	int64_t now = 0;
	auto r = engine::unlockRule(*ctx.store, call.accountId, id, now);
	return oneRule(r, now);
}

namespace {

std::string binOwner(const Context &ctx, const engine::BinEntry &e)
{
	return e.manifest.accountId.empty() ? ctx.defaultAccount : e.manifest.accountId;
}

} // namespace

Result<Reply> listSnapshotsInRecycleBin(Context &ctx, const Call &call)
{
	for (const std::string &id : call.args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	VS_ASSIGN(auto entries, engine::listRecycleBin(*ctx.store, call.args.all("snapshot-id")));
	Json list = Json::array();
	for (const engine::BinEntry &e : entries)
		if (binOwner(ctx, e) == call.accountId) // another account's are not listed
			list.append(binEntryJson(e));
	Json j = Json::object();
	j.set("Snapshots", list);
	return ok(j);
}

Result<Reply> restoreSnapshotFromRecycleBin(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	VS_TRY(checkSnapshotId(id));
	VS_ASSIGN(auto entries, engine::listRecycleBin(*ctx.store, {id}));
	for (const engine::BinEntry &e : entries)
		if (binOwner(ctx, e) != call.accountId)
			return fail(errc::kSnapshotNotFound, "snapshot " + id + " is not in the Recycle Bin");
	VS_ASSIGN(store::Manifest m, engine::restoreFromRecycleBin(*ctx.store, id));
	VS_TRY(ctx.sync->learn(*ctx.store, *ctx.catalog, {id}));
	Json j = Json::object();
	j.set("SnapshotId", Json::string(m.snapshotId));
	j.set("VolumeId", Json::string(m.volumeId));
	j.set("State", Json::string("completed"));
	j.set("StartTime", Json::string(m.startTime));
	j.set("Description", Json::string(m.description));
	return ok(j);
}

} // namespace virtsnap::daemon
