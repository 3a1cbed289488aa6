// Running a lifecycle policy's schedule: snapshots of the volumes or
// instances it targets, tagged as DLM tags them, their copies into other
// stores (policy_copies.h), then retention: the copies' in their target
// stores, then the schedule's own. A run that did not capture or copy
// everything it should have deletes nothing: it is recorded as failed and
// emits an event.
#include <cstdio>
#include <map>
#include <set>

#include "catalog/catalog.h"
#include "commands.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "engine/snapshot_locks.h"
#include "events/dispatcher.h"
#include "events/event.h"
#include "handlers.h"
#include "hypervisor/libvirt_driver.h"
#include "lifecycle_schedule.h"
#include "policy_commands.h"
#include "policy_copies.h"
#include "snapshot_job.h"

namespace virtsnap::daemon {

namespace {

// What one run captures: one volume (a VOLUME policy) or one instance.
struct RunTarget {
	hypervisor::Target target;
	std::string instanceKey;
	std::vector<std::string> disks;        // VOLUME: its disk
	std::vector<std::string> excludeDisks; // INSTANCE: data volumes ExcludeDataVolumeTags names
};

bool hasAnyTag(const catalog::Tags &tags, const PolicyTags &wanted)
{
	return std::any_of(wanted.begin(), wanted.end(),
			   [&](const auto &w) { return std::find(tags.begin(), tags.end(), w) != tags.end(); });
}

// Running libvirt domains whose <virtsnap:policy> metadata carries one of
// the policy's TargetTags, as the example script picks them. A host
// without libvirt has none: a warning, and the volumes' tags still count.
// Any other libvirt failure fails the run: it must not pass for a run that
// found nothing to snapshot.
Result<void> addTaggedDomains(Context &ctx, const PolicyDetails &details, std::map<std::string, RunTarget> &instances,
			      std::set<std::string> &targeted)
{
	VS_ASSIGN(auto domains, hypervisor::listTaggedDomains(ctx.options.libvirtUri, [](const std::string &why) {
			  std::fprintf(stderr, "virtsnap: warning: %s\n", why.c_str());
		  }));
	for (const hypervisor::TaggedDomain &d : domains) {
		if (!hasAnyTag(d.tags, details.targetTags))
			continue;
		std::string key = "uuid:" + d.uuid; // the libvirt driver's instance key
		RunTarget &t = instances[key];
		t.target = hypervisor::Target{"", ctx.options.libvirtUri, d.uuid};
		t.instanceKey = key;
		targeted.insert(key);
	}
	return {};
}

// The targets among the volumes this host knows (and knows how to reach),
// and the domains that opted in by metadata. An instance is targeted when
// one of its volumes, or its metadata, carries a TargetTags tag.
Result<std::vector<RunTarget>> findTargets(Context &ctx, const PolicyDetails &details)
{
	VS_ASSIGN(std::vector<catalog::VolumeRow> volumes, ctx.catalog->listVolumes());
	std::vector<RunTarget> out;
	std::map<std::string, RunTarget> instances;
	std::set<std::string> targeted;
	for (const catalog::VolumeRow &v : volumes) {
		if (v.target.empty())
			continue;
		bool wanted = hasAnyTag(v.tags, details.targetTags);
		if (details.resourceType == PolicyResourceType::Volume) {
			if (wanted)
				out.push_back({hypervisor::Target::parse(v.target), v.instanceKey, {v.diskId}, {}});
			continue;
		}
		RunTarget &t = instances[v.instanceKey];
		t.target = hypervisor::Target::parse(v.target);
		t.instanceKey = v.instanceKey;
		if (hasAnyTag(v.tags, details.excludeDataVolumeTags))
			t.excludeDisks.push_back(v.diskId);
		if (wanted)
			targeted.insert(v.instanceKey);
	}
	if (details.resourceType == PolicyResourceType::Instance)
		VS_TRY(addTaggedDomains(ctx, details, instances, targeted));
	for (const std::string &key : targeted)
		out.push_back(instances[key]);
	return out;
}

CreateRequest requestFor(const RunTarget &t, const catalog::PolicyRow &row, const PolicyDetails &details,
			 const PolicySchedule &schedule, UtcTime runTime)
{
	CreateRequest req;
	req.oneDisk = details.resourceType == PolicyResourceType::Volume;
	req.target = t.target;
	req.set.disks = t.disks;
	req.set.excludeDisks = t.excludeDisks;
	req.set.excludeBootVolume = details.excludeBootVolume;
	req.set.copyTagsFromSource = schedule.copyTags;
	// libvirt reaches the guest agent itself; a plain QEMU's would need a
	// socket a policy cannot name.
	req.set.quiesce = t.target.isLibvirt() ? hypervisor::QuiesceMode::Try : hypervisor::QuiesceMode::Off;
	req.set.description = "Created for policy: " + row.policyId + " schedule: " + schedule.name;
	req.set.ownerId = row.ownerId;
	req.set.tags = {{kPolicyIdTag, row.policyId}, {kScheduleNameTag, schedule.name}};
	for (const auto &[key, value] : schedule.tagsToAdd)
		req.set.tags.emplace_back(key, expandTagValue(value, instanceIdFor(t.instanceKey), runTime));
	req.set.warn = [](const std::string &w) { std::fprintf(stderr, "virtsnap: warning: %s\n", w.c_str()); };
	return req;
}

std::vector<std::string> snapshotIdsOf(const Json &doc)
{
	std::vector<std::string> ids;
	if (auto one = doc.getString("SnapshotId"))
		ids.push_back(*one);
	Json list = doc.get("Snapshots");
	for (size_t i = 0; i < list.size(); i++)
		ids.push_back(list.at(i).getString("SnapshotId").value_or(""));
	return ids;
}

// Runs another command's handler, as the dispatch table would.
Result<Reply> runCommand(Context &ctx, const std::string &name, const Json &options, const std::string &ownerId)
{
	const CommandSpec *spec = findCommand(name);
	VS_ASSIGN(Arguments args, Arguments::fromJson(name, options.dump(), spec->options));
	return spec->handler(ctx, Call{args, ownerId, {}, ctx.defaultAccount}); // policies act for the default account
}

Json idList(const std::vector<std::string> &ids)
{
	Json list = Json::array();
	for (const std::string &id : ids)
		list.append(Json::string(id));
	return list;
}

// Creates every target's snapshots and waits for them: their ids, or the
// first failure. `made` keeps the ids of what was made even then.
Result<void> capture(Context &ctx, const catalog::PolicyRow &row, const PolicyDetails &details,
		     const PolicySchedule &schedule, UtcTime runTime, std::vector<std::string> &made)
{
	VS_ASSIGN(std::vector<RunTarget> targets, findTargets(ctx, details));
	for (const RunTarget &t : targets) {
		CreateRequest request = requestFor(t, row, details, schedule, runTime);
		request.set.accountId = ctx.defaultAccount; // policies act for the default account
		VS_ASSIGN(Reply reply, startCreate(ctx, request, {}));
		std::vector<std::string> ids = snapshotIdsOf(reply.doc);
		made.insert(made.end(), ids.begin(), ids.end());
		if (reply.failure)
			return std::unexpected(*reply.failure);
	}
	if (made.empty())
		return {};
	Json wait = Json::object().set("snapshot-id", idList(made)).set("timeout", Json::array().append(Json::string("86400")));
	VS_ASSIGN(Reply waited, runCommand(ctx, "wait-snapshot-completed", wait, row.ownerId));
	if (waited.failure)
		return std::unexpected(*waited.failure);
	return {};
}

// The snapshots whose lock holds, which retention skips.
Result<std::set<std::string>> lockedSnapshots(Context &ctx)
{
	int64_t now = 0;
	VS_ASSIGN(auto locks, engine::describeLocks(*ctx.store, {}, now));
	std::set<std::string> locked;
	for (const engine::SnapshotLock &l : locks)
		if (l.state(now) != "expired")
			locked.insert(l.snapshotId);
	return locked;
}

// The schedule's retention over every snapshot carrying the policy's id;
// the ids it deleted.
Result<std::vector<std::string>> retire(Context &ctx, const catalog::PolicyRow &row, const PolicySchedule &schedule,
					UtcTime now)
{
	VS_ASSIGN(catalog::Page page, ctx.catalog->describeSnapshots(
					      {{std::string("tag:") + kPolicyIdTag, {row.policyId}}}, {}, 0, ""));
	VS_ASSIGN(auto locked, lockedSnapshots(ctx));
	std::vector<RetentionCandidate> candidates;
	for (const catalog::SnapshotRow &s : page.snapshots) {
		auto start = parseUtcTime(s.startTime);
		if (start)
			candidates.push_back({s.snapshotId, s.volumeId, *start, s.state == SnapshotState::Completed,
					      s.tags, locked.count(s.snapshotId) > 0});
	}
	std::vector<std::string> deleted;
	for (const std::string &id : snapshotsToRetire(schedule.retain, row.policyId, schedule.name, candidates, now)) {
		Json options = Json::object().set("snapshot-id", Json::array().append(Json::string(id)));
		VS_TRY(runCommand(ctx, "delete-snapshot", options, row.ownerId));
		deleted.push_back(id);
	}
	return deleted;
}

void emitFailure(Context &ctx, const catalog::PolicyRunRow &run)
{
	if (!ctx.events)
		return;
	events::PolicyRunNotice n;
	n.policyId = run.policyId;
	n.scheduleName = run.scheduleName;
	n.cause = run.message;
	n.startTime = run.startTime;
	n.endTime = run.endTime;
	ctx.events->emit(events::toJson(n));
}

} // namespace

Result<Json> runSchedule(Context &ctx, const catalog::PolicyRow &row, const PolicyDetails &details,
			 const PolicySchedule &schedule, std::optional<Error> *failure)
{
	catalog::PolicyRunRow run;
	VS_ASSIGN(run.runId, newResourceId("run-"));
	run.policyId = row.policyId;
	run.scheduleName = schedule.name;
	// To the millisecond: runs a moment apart are ordered by it.
	auto startedAt = std::chrono::system_clock::now();
	UtcTime start = std::chrono::floor<std::chrono::seconds>(startedAt);
	run.startTime = isoTime(startedAt);
	std::vector<std::string> deleted;
	PolicyCopies copies(ctx, row, schedule);
	Result<std::vector<std::string>> retired = [&]() -> Result<std::vector<std::string>> {
		VS_TRY(capture(ctx, row, details, schedule, start, run.snapshotIds));
		VS_TRY(copies.copy(run.snapshotIds));
		UtcTime now = policyNow();
		VS_TRY(copies.retire(now));
		return retire(ctx, row, schedule, now);
	}();
	run.endTime = isoTimeNow();
	run.outcome = retired ? "succeeded" : "failed";
	if (retired)
		deleted = *retired;
	else
		run.message = retired.error().toString();
	run.copies = copies.copies().dump();
	run.deletedCopies = copies.deleted().dump();
	VS_TRY(ctx.catalog->putPolicyRun(run));
	if (!retired) {
		emitFailure(ctx, run);
		*failure = retired.error();
	}
	Json j = Json::object();
	j.set("ScheduleName", Json::string(run.scheduleName)).set("StartTime", Json::string(run.startTime));
	j.set("EndTime", Json::string(run.endTime)).set("Outcome", Json::string(run.outcome));
	j.set("SnapshotIds", idList(run.snapshotIds)).set("DeletedSnapshotIds", idList(deleted));
	if (!schedule.copyRules.empty())
		j.set("Copies", copies.copies()).set("DeletedCopies", copies.deleted());
	if (!run.message.empty())
		j.set("Message", Json::string(run.message));
	return j;
}

Result<Reply> runLifecyclePolicy(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, parsePolicyId(call.args));
	VS_ASSIGN(catalog::PolicyRow row, existingPolicy(ctx, id));
	VS_ASSIGN(PolicyDetails details, detailsOf(row));
	VS_TRY(checkPolicyWriter(ctx, call, &details));
	std::string only = call.args.get("schedule");
	if (!only.empty() && std::none_of(details.schedules.begin(), details.schedules.end(),
					  [&](const PolicySchedule &s) { return s.name == only; }))
		return fail(errc::kInvalidParameterValue, "--schedule: policy " + id + " has no schedule '" + only + "'");
	Reply reply = ok(Json::object());
	Json runs = Json::array();
	for (const PolicySchedule &schedule : details.schedules) {
		if (!only.empty() && schedule.name != only)
			continue;
		VS_ASSIGN(Json run, runSchedule(ctx, row, details, schedule, &reply.failure));
		runs.append(std::move(run));
	}
	reply.doc.set("PolicyId", Json::string(id)).set("Runs", std::move(runs));
	return reply;
}

} // namespace virtsnap::daemon
