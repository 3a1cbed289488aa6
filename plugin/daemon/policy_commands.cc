// Lifecycle policies as DLM's API has them: create, get (all, or one with
// its schedules' runs), update and delete. Running them is the timer's and
// run-lifecycle-policy's; here they are only kept, in the catalog.
#include <unistd.h>

#include <algorithm>

#include "catalog/catalog.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "handlers.h"
#include "lifecycle_schedule.h"
#include "policy_commands.h"
#include "requests.h"
#include "store_targets.h"

namespace virtsnap::daemon {

namespace {

// How many of each schedule's runs get-lifecycle-policy shows.
constexpr int kRecentRuns = 10;

bool targetsAny(const PolicyDetails &details, const PolicyTags &tags)
{
	return std::any_of(tags.begin(), tags.end(), [&](const auto &tag) {
		return std::find(details.targetTags.begin(), details.targetTags.end(), tag) != details.targetTags.end();
	});
}

bool matches(const PolicyFilter &filter, const catalog::PolicyRow &row, const PolicyDetails &details)
{
	if (!filter.policyIds.empty() &&
	    std::find(filter.policyIds.begin(), filter.policyIds.end(), row.policyId) == filter.policyIds.end())
		return false;
	if (!filter.state.empty() && filter.state != row.state)
		return false;
	return filter.targetTags.empty() || targetsAny(details, filter.targetTags);
}

Json runJson(const catalog::PolicyRunRow &run)
{
	Json ids = Json::array();
	for (const std::string &id : run.snapshotIds)
		ids.append(Json::string(id));
	Json j = Json::object();
	j.set("StartTime", Json::string(run.startTime)).set("EndTime", Json::string(run.endTime));
	j.set("Outcome", Json::string(run.outcome)).set("SnapshotIds", std::move(ids));
	if (!run.message.empty())
		j.set("Message", Json::string(run.message));
	// Runs of schedules with CrossStoreCopyRules: what went where.
	auto copies = Json::parse(run.copies);
	auto deleted = Json::parse(run.deletedCopies);
	if (copies && copies->size() > 0)
		j.set("Copies", *copies);
	if (deleted && deleted->size() > 0)
		j.set("DeletedCopies", *deleted);
	return j;
}

// LastRun, NextRun and the recent runs of one schedule. NextRun counts from
// the later of its last run and schedules_from, as the timer does; a
// disabled policy has none.
Result<Json> scheduleRunsJson(Context &ctx, const catalog::PolicyRow &row, const PolicySchedule &schedule)
{
	VS_ASSIGN(std::vector<catalog::PolicyRunRow> runs, ctx.catalog->policyRuns(row.policyId, schedule.name, kRecentRuns));
	Json j = Json::object();
	j.set("Name", Json::string(schedule.name));
	std::optional<UtcMillis> from = parseUtcTime(row.schedulesFrom);
	if (!runs.empty()) {
		j.set("LastRun", Json::string(runs.front().startTime));
		auto last = parseUtcTime(runs.front().startTime);
		if (last && (!from || *last > *from))
			from = last;
	}
	if (row.state == "ENABLED" && from)
		if (auto next = nextRunAfter(schedule.create, std::chrono::floor<std::chrono::seconds>(*from)))
			j.set("NextRun", Json::string(isoTime(*next)));
	Json recent = Json::array();
	for (const catalog::PolicyRunRow &run : runs)
		recent.append(runJson(run));
	j.set("RecentRuns", std::move(recent));
	return j;
}

Json summaryJson(const catalog::PolicyRow &row)
{
	Json j = Json::object();
	j.set("PolicyId", Json::string(row.policyId)).set("Description", Json::string(row.description));
	j.set("State", Json::string(row.state)).set("PolicyType", Json::string("EBS_SNAPSHOT_MANAGEMENT"));
	return j;
}

} // namespace

UtcTime policyNow()
{
	return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
}

Result<catalog::PolicyRow> existingPolicy(Context &ctx, const std::string &id)
{
	VS_ASSIGN(auto row, ctx.catalog->getPolicy(id));
	if (!row)
		return fail(errc::kResourceNotFound, "policy " + id + " does not exist");
	return *row;
}

// The details as the catalog keeps them, checked again: a policy written
// by a newer virtsnap, or damaged, is named rather than half understood.
Result<PolicyDetails> detailsOf(const catalog::PolicyRow &row)
{
	auto json = Json::parse(row.details);
	if (!json)
		return fail(errc::kCorrupt, "policy " + row.policyId + ": its details in the catalog are not JSON");
	auto details = parsePolicyDetails(*json, std::nullopt);
	if (!details)
		return fail(errc::kCorrupt, "policy " + row.policyId + ": " + details.error().message);
	return details;
}

Result<void> checkPolicyWriter(const Context &ctx, const Call &call, const PolicyDetails *details)
{
	if (::geteuid() != 0 || call.uid == "0")
		return {};
	if (call.accountId != ctx.defaultAccount)
		return fail(errc::kAccessDenied, call.args.command() + ": lifecycle policies act for the store's default "
									"account, and you act as " + call.accountId);
	if (details && std::any_of(details->schedules.begin(), details->schedules.end(),
				   [](const PolicySchedule &s) { return !s.copyRules.empty(); }))
		return fail(errc::kAccessDenied, call.args.command() +
							 ": a policy with CrossStoreCopyRules through virtsnapd is for root");
	return {};
}

Result<Reply> createLifecyclePolicy(Context &ctx, const Call &call)
{
	UtcTime now = policyNow();
	VS_ASSIGN(std::string description, call.args.require("description"));
	VS_TRY(checkPolicyDescription(description));
	VS_ASSIGN(bool enabled, parsePolicyState(call.args.get("state", "ENABLED")));
	VS_ASSIGN(PolicyDetails details, parsePolicyDetailsOption(call.args, now));
	VS_TRY(checkPolicyWriter(ctx, call, &details));
	VS_TRY(checkCopyTargets(details, storeTargetUrls(ctx), ctx.location.url));
	VS_ASSIGN(std::string id, newResourceId("policy-"));
	catalog::PolicyRow row;
	row.policyId = id;
	row.description = description;
	row.state = enabled ? "ENABLED" : "DISABLED";
	row.details = toJson(details).dump();
	row.ownerId = call.uid;
	row.dateCreated = row.dateModified = row.schedulesFrom = isoTime(now);
	VS_TRY(ctx.catalog->putPolicy(row));
	Json doc = Json::object();
	doc.set("PolicyId", Json::string(id));
	return ok(doc);
}

Result<Reply> getLifecyclePolicies(Context &ctx, const Call &call)
{
	VS_ASSIGN(PolicyFilter filter, parsePolicyFilter(call.args));
	VS_ASSIGN(std::vector<catalog::PolicyRow> rows, ctx.catalog->listPolicies());
	for (const std::string &id : filter.policyIds)
		if (std::none_of(rows.begin(), rows.end(), [&](const auto &r) { return r.policyId == id; }))
			return fail(errc::kResourceNotFound, "policy " + id + " does not exist");
	Json list = Json::array();
	for (const catalog::PolicyRow &row : rows) {
		VS_ASSIGN(PolicyDetails details, detailsOf(row));
		if (matches(filter, row, details))
			list.append(summaryJson(row));
	}
	Json doc = Json::object();
	doc.set("Policies", std::move(list));
	return ok(doc);
}

Result<Reply> getLifecyclePolicy(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, parsePolicyId(call.args));
	VS_ASSIGN(catalog::PolicyRow row, existingPolicy(ctx, id));
	VS_ASSIGN(PolicyDetails details, detailsOf(row));
	Json policy = summaryJson(row);
	policy.set("DateCreated", Json::string(row.dateCreated)).set("DateModified", Json::string(row.dateModified));
	policy.set("PolicyDetails", toJson(details));
	Json schedules = Json::array();
	for (const PolicySchedule &schedule : details.schedules) {
		VS_ASSIGN(Json runs, scheduleRunsJson(ctx, row, schedule));
		schedules.append(std::move(runs));
	}
	policy.set("ScheduleRuns", std::move(schedules));
	Json doc = Json::object();
	doc.set("Policy", std::move(policy));
	return ok(doc);
}

// Only what is given changes. Enabling a policy, or new details, start its
// schedules afresh from now: slots it was disabled for, or that belonged to
// the old schedules, are not "missed" runs.
Result<Reply> updateLifecyclePolicy(Context &ctx, const Call &call)
{
	UtcTime now = policyNow();
	VS_ASSIGN(std::string id, parsePolicyId(call.args));
	std::optional<PolicyDetails> details;
	if (call.args.has("policy-details")) {
		VS_ASSIGN(details, parsePolicyDetailsOption(call.args, now));
		VS_TRY(checkCopyTargets(*details, storeTargetUrls(ctx), ctx.location.url));
	}
	if (call.args.has("description"))
		VS_TRY(checkPolicyDescription(call.args.get("description")));
	std::optional<bool> enabled;
	if (call.args.has("state")) {
		VS_ASSIGN(enabled, parsePolicyState(call.args.get("state")));
	}
	VS_TRY(ctx.catalog->transaction([&]() -> Result<void> {
		VS_ASSIGN(catalog::PolicyRow row, existingPolicy(ctx, id));
		if (details) {
			VS_TRY(checkPolicyWriter(ctx, call, &*details));
		} else {
			VS_ASSIGN(PolicyDetails current, detailsOf(row));
			VS_TRY(checkPolicyWriter(ctx, call, &current));
		}
		bool restart = details || (enabled && *enabled && row.state != "ENABLED");
		if (details)
			row.details = toJson(*details).dump();
		if (call.args.has("description"))
			row.description = call.args.get("description");
		if (enabled)
			row.state = *enabled ? "ENABLED" : "DISABLED";
		row.dateModified = isoTime(now);
		if (restart)
			row.schedulesFrom = row.dateModified;
		return ctx.catalog->putPolicy(row);
	}));
	return ok(Json::object());
}

Result<Reply> deleteLifecyclePolicy(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, parsePolicyId(call.args));
	VS_TRY(ctx.catalog->transaction([&]() -> Result<void> {
		VS_TRY(existingPolicy(ctx, id));
		VS_TRY(checkPolicyWriter(ctx, call, nullptr));
		return ctx.catalog->removePolicy(id);
	}));
	return ok(Json::object());
}

} // namespace virtsnap::daemon
