// create-volume --instant, complete-instant-restore and
// describe-instant-restores (instant_job.h; engine/instant_restore.h).
#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <thread>

#include "catalog/catalog.h"
#include "catalog_sync.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "driver_cache.h"
#include "admission.h"
#include "engine/instant_restore.h"
#include "engine/restore_journal.h"
#include "handlers.h"
#include "access.h"
#include "instant_job.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

namespace fs = std::filesystem;

// nbdkit runs from /: the store's directory and the key file by absolute
// names.
std::string absoluteStoreUrl(const std::string &url)
{
	if (url.find("://") != std::string::npos)
		return url;
	return fs::absolute(url).lexically_normal().string();
}

engine::InstantRequest instantRequest(Context &ctx, const Call &call, const std::string &snapshotId,
				      const std::string &target)
{
	engine::InstantRequest req;
	req.socket = call.args.get("nbd-socket");
	req.snapshotId = snapshotId;
	req.target = fs::absolute(target);
	req.writeAs = call.uid;
	req.warn = warnOnStderr;
	req.instantDir = ctx.location.stateDir / "instant";
	req.serve.exportsDir = ctx.location.stateDir / "exports";
	req.serve.storeUrl = absoluteStoreUrl(ctx.location.url);
	req.serve.keyFile = fs::absolute(ctx.location.keyFile);
	if (!ctx.location.s3CredentialsFile.empty())
		req.serve.s3CredentialsFile = fs::absolute(ctx.location.s3CredentialsFile);
	req.serve.timeout = ctx.location.timeout;
	return req;
}

Result<uint64_t> parseSpeed(const Arguments &args)
{
	if (!args.has("speed"))
		return uint64_t(0);
	const std::string v = args.get("speed");
	char *end = nullptr;
	unsigned long long n = std::strtoull(v.c_str(), &end, 10);
	if (v.empty() || *end || v[0] == '-')
		return fail(errc::kInvalidParameterValue, "--speed '" + v + "' must be bytes per second (0: unlimited)");
	return uint64_t(n);
}

// The instance that copies, and its disk (a libvirt disk id, or a plain
// QEMU's node name); none when neither --qmp-socket nor --domain is given.
struct Copier {
	std::shared_ptr<hypervisor::Driver> driver;
	hypervisor::Target target;
	std::string disk;
};

Result<Copier> copierOf(Context &ctx, const Arguments &args)
{
	Copier c;
	if (!args.has("qmp-socket") && !args.has("domain")) {
		if (args.has("node") || args.has("disk"))
			return fail(errc::kMissingParameter, "--node and --disk go with --qmp-socket or --domain");
		return c;
	}
	VS_ASSIGN(c.target, parseTarget(args, ctx.options.libvirtUri));
	if (c.target.isLibvirt()) {
		VS_ASSIGN(c.disk, args.require("disk"));
	} else {
		VS_ASSIGN(c.disk, args.require("node"));
	}
	VS_ASSIGN(c.driver, ctx.drivers->get(c.target));
	return c;
}

// Whatever the copy's start left: the export, the file.
void undoInstant(Context &ctx, const engine::InstantVolume &v, const fs::path &target)
{
	(void)engine::endInstantExport(*ctx.store, v.exported.exportId, v.statsFile);
	std::error_code ec;
	fs::remove(target, ec);
}

Reply instantReply(const InstantState &s)
{
	Reply r = ok(s.toJson());
	if (s.state == "error")
		r.failure = Error{errc::kIncorrectState, "instant restore of " + s.target + ": " + s.stateMessage};
	return r;
}

// An instant restore is its account's: another sees none (as it sees no
// snapshot of another's), root sees all.
bool ownsRestore(const Call &call, const InstantState &s)
{
	return call.uid == "0" || s.ownerId == call.accountId;
}

// What the engine made for one instant volume, as its state records it.
void recordVolume(InstantState &s, const engine::InstantVolume &v)
{
	s.snapshotId = v.manifest.snapshotId;
	s.volumeId = v.manifest.volumeId;
	s.size = v.manifest.volumeSize;
	s.target = v.target.string();
	s.exportId = v.exported.exportId;
	s.uri = v.exported.uri;
	s.statsFile = v.statsFile.string();
}

// The saved states of an instance's instant volumes: `common`'s owner,
// times, instance and speed, each disk's own job id and volume.
Result<std::vector<InstantState>> saveInstanceStates(Context &ctx, const Call &call, const InstantState &common,
						     const engine::InstanceRestorePlan &plan,
						     const std::vector<engine::InstantVolume> &made,
						     const std::vector<std::string> &jobIds)
{
	std::vector<InstantState> states;
	for (size_t i = 0; i < made.size(); i++) {
		InstantState s = common;
		s.jobId = jobIds[i];
		s.disk = plan.disks[i].diskId;
		recordVolume(s, made[i]);
		VS_TRY(saveInstantState(ctx, s));
		restoredVolumeProductCodes(ctx, call, made[i].manifest);
		states.push_back(std::move(s));
	}
	return states;
}

} // namespace

Result<Reply> createVolumeInstant(Context &ctx, const Call &call)
{
	const Arguments &args = call.args;
	InstantState s;
	s.startMs = unixMillisNow();
	s.startTime = isoTimeNow();
	VS_ASSIGN(s.snapshotId, args.require("snapshot-id"));
	VS_ASSIGN(std::string target, args.require("target"));
	// nbdkit runs as virtsnapd's user and binds where it is told, as for
	// serve-snapshot.
	if (args.has("nbd-socket"))
		VS_TRY(requireRoot(call));
	s.ownerId = call.accountId;
	VS_TRY(checkSnapshotId(s.snapshotId));
	if (args.get("format", "qcow2") != "qcow2")
		return fail(errc::kInvalidParameterValue, "--instant makes a qcow2 image (its backing is the export)");
	if (args.has("domain"))
		return fail(errc::kInvalidParameterValue,
			    "create-volume --instant copies with --qmp-socket PATH --node NODE; a libvirt domain "
			    "running on the image copies with complete-instant-restore --domain D --disk DISK");
	VS_ASSIGN(s.speed, parseSpeed(args));
	if (args.has("nbd-socket") && !fs::path(args.get("nbd-socket")).is_absolute())
		return fail(errc::kInvalidParameterValue, "--nbd-socket must be an absolute path");
	VS_TRY(ctx.sync->learn(*ctx.store, *ctx.catalog, {s.snapshotId}));
	// Its owner's, or shared with the caller's account (access.h).
	VS_ASSIGN(catalog::SnapshotRow row, visibleSnapshot(ctx, call, s.snapshotId));
	VS_TRY(requireCompleted(row, "restored"));
	VS_TRY(refuseSharedEncrypted(ctx, call, row));
	VS_ASSIGN(Copier copier, copierOf(ctx, args)); // an instance that is not there fails before anything is made
	VS_ASSIGN(engine::InstantVolume v, engine::createInstantVolume(*ctx.store, instantRequest(ctx, call, s.snapshotId, target)));
	recordVolume(s, v);
	s.target = fs::absolute(target).string();
	auto job = newResourceId("job-");
	if (!job) {
		undoInstant(ctx, v, s.target);
		return std::unexpected(job.error());
	}
	s.jobId = *job;
	if (copier.driver) {
		s.instance = copier.target.key();
		s.disk = copier.disk;
		auto started = copier.driver->openImage(copier.disk, s.target);
		if (!started) {
			undoInstant(ctx, v, s.target);
			return std::unexpected(started.error());
		}
		if (started = copier.driver->startPull(copier.disk, s.speed); !started) {
			copier.driver->closeImage(copier.disk);
			undoInstant(ctx, v, s.target);
			return std::unexpected(started.error());
		}
	}
	s.readyMillis = unixMillisNow() - s.startMs;
	if (auto saved = saveInstantState(ctx, s); !saved) {
		undoInstant(ctx, v, s.target);
		return std::unexpected(saved.error());
	}
	restoredVolumeProductCodes(ctx, call, v.manifest);
	if (copier.driver)
		s = InstantJob::watch(ctx, {s}, copier.driver).front();
	return instantReply(s);
}

Result<Reply> restoreInstanceInstant(Context &ctx, const Call &call)
{
	InstantState common;
	common.startMs = unixMillisNow();
	common.startTime = isoTimeNow();
	common.ownerId = call.accountId;
	VS_ASSIGN(std::string setId, call.args.require("snapshot-set-id"));
	VS_ASSIGN(hypervisor::Target target, parseTarget(call.args, ctx.options.libvirtUri));
	if (!target.isLibvirt())
		return fail(errc::kInvalidParameterValue, "restore-instance --instant restores a libvirt domain (--domain); "
							  "a plain QEMU's disk: create-volume --instant --qmp-socket");
	if (call.args.has("target-dir"))
		return fail(errc::kInvalidParameterValue, "--instant replaces the domain's disks: no --target-dir");
	VS_ASSIGN(common.speed, parseSpeed(call.args));
	common.instance = target.key();
	VS_ASSIGN(auto driver, ctx.drivers->get(target));
	VS_ASSIGN(auto set, snapshotsOfSet(ctx, call, setId));
	VS_ASSIGN(engine::InstanceRestorePlan plan, engine::planInstanceRestore(*driver, setId, set));
	for (const engine::InstanceRestorePlan::Disk &d : plan.disks)
		if (d.encrypted)
			return fail(errc::kInvalidParameterValue,
				    "disk " + d.diskId + " of " + plan.instanceName +
					    " is encrypted: --instant would put a plain image in its place; "
					    "restore the set without --instant");
	// Made before any disk is swapped: nothing after the swap may fail
	// for want of one.
	std::vector<std::string> jobIds;
	for (size_t i = 0; i < plan.disks.size(); i++) {
		VS_ASSIGN(std::string id, newResourceId("job-"));
		jobIds.push_back(std::move(id));
	}
	// Each export's socket beside its image, where QEMU's user reaches
	// the image too, with the group of that directory.
	auto requestFor = [&](const engine::InstanceRestorePlan::Disk &d) {
		engine::InstantRequest req = instantRequest(ctx, call, d.snapshotId, d.image.string());
		req.writeAs = ""; // the images are the domain's: they take the owner and mode of those they replace
		req.socket = d.image.string() + ".nbd.sock";
		return req;
	};
	VS_TRY(ctx.admission->beginRestore(plan.instanceKey, plan.described));
	auto made = engine::instantRestoreInstance(*ctx.store, *driver, plan,
						   engine::restoreJournalDir(ctx.location.stateDir), requestFor);
	ctx.admission->endRestore(plan.instanceKey);
	VS_TRY(made);
	VS_ASSIGN(std::vector<InstantState> states, saveInstanceStates(ctx, call, common, plan, *made, jobIds));
	// From here the domain's disks are the instant images: a failure to
	// start or to copy leaves them usable, and complete-instant-restore
	// copies them.
	VS_TRY(driver->startInstance());
	const int64_t ready = unixMillisNow() - common.startMs;
	// One copy at a time (instant_job.h says why): the first starts here,
	// the job starts each next one.
	for (InstantState &s : states)
		s.readyMillis = ready;
	Json list = Json::array();
	if (auto pulled = driver->startPull(states.front().disk, common.speed); !pulled) {
		for (InstantState &s : states)
			InstantJob::failed(ctx, s, "the copy did not start: " + pulled.error().toString());
	} else {
		for (const InstantState &s : states)
			VS_TRY(saveInstantState(ctx, s));
		states = InstantJob::watch(ctx, states, driver);
	}
	for (const InstantState &s : states)
		list.append(s.toJson());
	Json doc = Json::object();
	doc.set("SnapshotSetId", Json::string(setId));
	doc.set("Domain", Json::string(plan.instanceName));
	doc.set("ReadyMillis", Json::integer(ready));
	doc.set("Volumes", list);
	return ok(doc);
}

Result<Reply> completeInstantRestore(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string target, call.args.require("target"));
	target = fs::absolute(target).string();
	VS_ASSIGN(auto found, findInstantRestore(ctx, target));
	if (!found || !ownsRestore(call, *found))
		return fail(errc::kResourceNotFound, "no instant restore of " + target + " is known here");
	InstantState s = *found;
	if (s.state == "available")
		return instantReply(s);
	// A watch that just wrote its end retires a moment later.
	for (int i = 0; i < 50 && s.state != "initializing" && ctx.jobs->enrolled(s.jobId); i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	if (ctx.jobs->enrolled(s.jobId))
		return fail(errc::kIncorrectState, "the copy of " + target + " is being watched already (" + s.jobId + ")");
	VS_ASSIGN(uint64_t speed, parseSpeed(call.args));
	VS_ASSIGN(Copier copier, copierOf(ctx, call.args));
	if (!copier.driver && !s.instance.empty() && !call.args.has("offline")) {
		// The instance that copied before copies again.
		copier.target = hypervisor::Target::parse(s.instance);
		copier.disk = s.disk;
		VS_ASSIGN(copier.driver, ctx.drivers->get(copier.target));
	}
	s.state = "initializing";
	s.stateMessage.clear();
	if (!copier.driver) {
		// Offline: nothing may have the image open.
		VS_TRY(engine::copyInOffline(target, call.uid));
		InstantJob::finish(ctx, s);
		return instantReply(s);
	}
	if (call.args.has("speed"))
		s.speed = speed;
	s.instance = copier.target.key();
	s.disk = copier.disk;
	VS_TRY(copier.driver->startPull(copier.disk, s.speed));
	VS_TRY(saveInstantState(ctx, s));
	return instantReply(InstantJob::watch(ctx, {s}, copier.driver).front());
}

Result<Reply> describeInstantRestores(Context &ctx, const Call &call)
{
	std::vector<std::string> targets;
	for (const std::string &t : call.args.all("target"))
		targets.push_back(fs::absolute(t).string());
	Json list = Json::array();
	for (JobState st : {JobState::Running, JobState::Failed, JobState::Interrupted, JobState::Done}) {
		VS_ASSIGN(auto jobs, ctx.catalog->jobsInState(st));
		for (const catalog::JobRow &job : jobs) {
			if (job.kind != kInstantKind)
				continue;
			if (!targets.empty() && std::find(targets.begin(), targets.end(), job.target) == targets.end())
				continue;
			if (auto j = Json::parse(job.details); j && ownsRestore(call, InstantState::fromJson(*j)))
				list.append(*j);
		}
	}
	Json doc = Json::object();
	doc.set("InstantRestores", list);
	return ok(doc);
}

} // namespace virtsnap::daemon
