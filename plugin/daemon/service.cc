#include "service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <system_error>
#include <thread>

#include "commands.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "crypto/crypto.h"
#include "crypto/resource_ids.h"
#include "engine/resources.h"
#include "engine/restore.h"
#include "engine/work_dir.h"
#include "hypervisor/libvirt_driver.h"
#include "events/event.h"
#include "store/gc.h"
#include "store/verify.h"

namespace virtsnap::daemon {

namespace fs = std::filesystem;

namespace {


Json tagsJson(const catalog::Tags &tags)
{
	Json a = Json::array();
	for (const auto &[k, v] : tags) {
		Json t = Json::object();
		t.set("Key", Json::string(k));
		t.set("Value", Json::string(v));
		a.append(t);
	}
	return a;
}

catalog::SnapshotRow rowFromManifest(const store::Manifest &m, SnapshotState state,
				     const std::string &message = "")
{
	catalog::SnapshotRow r;
	r.snapshotId = m.snapshotId;
	r.volumeId = m.volumeId;
	r.state = state;
	r.stateMessage = message;
	r.progress = state == SnapshotState::Completed ? 100 : 0;
	r.startTime = m.startTime;
	r.completionTime = m.completionTime;
	r.description = m.description;
	r.name = m.name;
	r.ownerId = m.ownerId;
	r.consistencyLevel = m.consistency;
	r.volumeSize = m.volumeSize;
	r.bytesAdded = m.stats.bytesAdded;
	r.bytesRead = m.stats.bytesRead;
	r.snapshotSetId = m.snapshotSetId;
	r.parentSnapshotId = m.parentSnapshotId;
	r.captureMode = m.captureMode;
	r.captureReason = m.captureReason;
	r.quiesceNote = m.quiesceNote;
	r.diskId = m.volume.diskId;
	r.instanceName = m.volume.instanceName;
	r.freezeMillis = m.freezeMillis;
	r.tags = m.tags;
	return r;
}

// One snapshot in the EC2 DescribeSnapshots shape, plus virtsnap's own.
Json snapshotJson(const catalog::SnapshotRow &r)
{
	constexpr uint64_t kGiB = 1ull << 30;
	Json j = Json::object();
	j.set("SnapshotId", Json::string(r.snapshotId));
	j.set("VolumeId", Json::string(r.volumeId));
	j.set("State", Json::string(name(r.state)));
	if (!r.stateMessage.empty())
		j.set("StateMessage", Json::string(r.stateMessage));
	j.set("Progress", Json::string(std::to_string(r.progress) + "%"));
	j.set("StartTime", Json::string(r.startTime));
	if (!r.completionTime.empty())
		j.set("CompletionTime", Json::string(r.completionTime));
	j.set("VolumeSize", Json::integer(int64_t((r.volumeSize + kGiB - 1) / kGiB)));
	j.set("Description", Json::string(r.description));
	if (!r.name.empty())
		j.set("Name", Json::string(r.name));
	j.set("Encrypted", Json::boolean(r.encrypted));
	j.set("OwnerId", Json::string(r.ownerId));
	j.set("Tags", tagsJson(r.tags));
	j.set("ConsistencyLevel", Json::string(r.consistencyLevel));
	if (r.freezeMillis >= 0)
		j.set("FreezeMillis", Json::integer(r.freezeMillis));
	if (!r.quiesceNote.empty())
		j.set("QuiesceNote", Json::string(r.quiesceNote));
	if (!r.snapshotSetId.empty())
		j.set("SnapshotSetId", Json::string(r.snapshotSetId));
	if (!r.captureMode.empty())
		j.set("CaptureMode", Json::string(r.captureMode));
	if (!r.captureReason.empty())
		j.set("CaptureReason", Json::string(r.captureReason));
	if (!r.parentSnapshotId.empty())
		j.set("ParentSnapshotId", Json::string(r.parentSnapshotId));
	j.set("VolumeSizeBytes", Json::integer(int64_t(r.volumeSize)));
	j.set("BytesRead", Json::integer(int64_t(r.bytesRead)));
	j.set("BytesAdded", Json::integer(int64_t(r.bytesAdded)));
	j.set("Disk", Json::string(r.diskId));
	j.set("Instance", Json::string(r.instanceName));
	return j;
}

Json volumeJson(const catalog::VolumeRow &v)
{
	constexpr uint64_t kGiB = 1ull << 30;
	Json j = Json::object();
	j.set("VolumeId", Json::string(v.volumeId));
	j.set("Instance", Json::string(v.instanceName));
	j.set("InstanceKey", Json::string(v.instanceKey));
	j.set("Disk", Json::string(v.diskId));
	j.set("Size", Json::integer(int64_t((v.size + kGiB - 1) / kGiB)));
	j.set("SizeBytes", Json::integer(int64_t(v.size)));
	j.set("VolumeClass", Json::string(v.volumeClass));
	j.set("Tags", tagsJson(v.tags));
	j.set("BitmapsSuspect", Json::boolean(v.bitmapsSuspect));
	return j;
}

catalog::VolumeRow volumeRow(const engine::VolumeRecord &v, const std::string &target)
{
	catalog::VolumeRow r;
	r.volumeId = v.volumeId;
	r.instanceKey = v.instanceKey;
	r.instanceName = v.instanceName;
	r.diskId = v.diskId;
	r.volumeClass = v.volumeClass;
	r.target = target;
	r.size = v.size;
	r.tags = v.tags;
	return r;
}

Reply ok(Json doc)
{
	return Reply{std::move(doc), std::nullopt};
}

// libvirt reaches a domain's agent itself; a plain QEMU's is --qga-socket.
Result<hypervisor::QuiesceMode> quiesceMode(const Arguments &args)
{
	bool agent = args.has("qga-socket") || args.has("domain");
	std::string mode = args.get("quiesce", agent ? "try" : "off");
	if (mode == "off")
		return hypervisor::QuiesceMode::Off;
	if (mode != "try" && mode != "required")
		return fail(errc::kInvalidParameterValue, "--quiesce must be required, try or off");
	if (!agent)
		return fail(errc::kMissingParameter, "--quiesce " + mode + " needs --qga-socket");
	if (args.has("domain") && args.has("qga-socket"))
		return fail(errc::kInvalidParameterValue,
			    "--qga-socket is for --qmp-socket; libvirt reaches a domain's guest agent itself");
	return mode == "try" ? hypervisor::QuiesceMode::Try : hypervisor::QuiesceMode::Required;
}

Result<int64_t> parseInt(const std::string &option, const std::string &v, int64_t lo, int64_t hi)
{
	char *end = nullptr;
	long long n = std::strtoll(v.c_str(), &end, 10);
	if (v.empty() || *end || n < lo || n > hi)
		return fail(errc::kInvalidParameterValue, "--" + option + " '" + v + "' must be a number from " +
								  std::to_string(lo) + " to " + std::to_string(hi));
	return n;
}

// The options create-snapshot and create-snapshots share.
Result<engine::SnapshotSetRequest> setRequest(const Arguments &args)
{
	engine::SnapshotSetRequest req;
	req.qgaSocket = args.get("qga-socket");
	auto mode = quiesceMode(args);
	if (!mode)
		return std::unexpected(mode.error());
	req.quiesce = *mode;
	if (args.has("freeze-timeout")) {
		std::string v = args.get("freeze-timeout");
		char *end = nullptr;
		double secs = std::strtod(v.c_str(), &end);
		if (v.empty() || *end || !(secs > 0) || secs > 3600)
			return fail(errc::kInvalidParameterValue,
				    "--freeze-timeout '" + v + "' is not a number of seconds (0 to 3600)");
		req.freezeTimeout = std::chrono::milliseconds(int64_t(secs * 1000));
	}
	req.description = args.get("description");
	if (req.description.size() > 256)
		return fail(errc::kInvalidParameterValue, "--description is longer than 256 characters");
	req.name = args.get("name");
	static const std::regex namePattern("[a-z]([-a-z0-9]{0,61}[a-z0-9])?");
	if (args.has("name") && !std::regex_match(req.name, namePattern))
		return fail(errc::kInvalidParameterValue,
			    "--name '" + req.name + "' must match [a-z]([-a-z0-9]{0,61}[a-z0-9])?");
	auto tags = engine::parseTags(args.all("tag"));
	if (!tags)
		return std::unexpected(tags.error());
	req.tags = *tags;
	req.excludeDisks = args.all("exclude-disk");
	req.excludeBootVolume = args.has("exclude-boot-volume");
	req.copyTagsFromSource = args.has("copy-tags-from-source");
	return req;
}

// "Name=status,Values=pending,completed"
Result<catalog::Filter> parseFilter(const std::string &spec)
{
	const std::string namePrefix = "Name=", valuesMark = ",Values=";
	auto at = spec.find(valuesMark);
	if (spec.rfind(namePrefix, 0) != 0 || at == std::string::npos || at <= namePrefix.size())
		return fail(errc::kInvalidParameterValue,
			    "--filter '" + spec + "' is not Name=NAME,Values=V1,V2,...");
	catalog::Filter f;
	f.name = spec.substr(namePrefix.size(), at - namePrefix.size());
	std::string values = spec.substr(at + valuesMark.size());
	for (size_t start = 0;;) {
		size_t comma = values.find(',', start);
		f.values.push_back(values.substr(start, comma - start));
		if (comma == std::string::npos)
			break;
		start = comma + 1;
	}
	return f;
}

std::string requestHash(const Arguments &args)
{
	Arguments stripped = args;
	stripped.erase("client-token");
	stripped.erase("wait");
	std::string text = args.command() + "\n" + stripped.toJson();
	return toHex(crypto::sha256(std::span((const uint8_t *)text.data(), text.size())));
}

} // namespace

Result<std::unique_ptr<Service>> Service::open(const fs::path &storeDir, const fs::path &keyFile,
					       ServiceOptions options, events::Dispatcher *events)
{
	std::unique_ptr<Service> s(new Service(options, events));
	auto store = store::Store::open(storeDir, keyFile);
	if (!store)
		return std::unexpected(store.error());
	s->store_ = std::move(*store);
	auto catalog = catalog::Catalog::open(storeDir / "catalog.sqlite");
	if (!catalog)
		return std::unexpected(catalog.error());
	s->catalog_ = std::move(*catalog);
	if (s->catalog_->isEmpty()) {
		auto manifests = s->store_->listManifests();
		if (manifests && !manifests->empty())
			VS_TRY(s->rebuildCatalog());
	}
	return s;
}

Service::~Service()
{
	{
		// Under the lock its waiters hold, so none misses the wakeup.
		std::lock_guard admission(admissionMutex_);
		std::lock_guard jobs(jobsMutex_);
		for (auto &[id, cancel] : jobs_)
			cancel->store(true);
		captureFreed_.notify_all();
	}
	std::unique_lock lock(jobsMutex_);
	slotFree_.notify_all();
	jobsDone_.wait(lock, [&] { return jobs_.empty(); });
}

size_t Service::runningJobs() const
{
	std::lock_guard lock(jobsMutex_);
	return jobs_.size();
}

Result<Reply> Service::run(const Arguments &args, const std::string &ownerId, const engine::ProgressFn &progress)
{
	const std::string &c = args.command();
	if (c == "create-snapshot" || c == "create-snapshots")
		return createSnapshots(args, c == "create-snapshot", ownerId, progress);
	if (c == "describe-snapshots")
		return describeSnapshots(args);
	if (c == "delete-snapshot")
		return deleteSnapshot(args);
	if (c == "create-volume")
		return createVolume(args, progress);
	if (c == "create-tags" || c == "delete-tags")
		return changeTags(args, c == "create-tags");
	if (c == "register-instance")
		return registerInstance(args);
	if (c == "describe-volumes")
		return describeVolumes(args);
	if (c == "modify-volume")
		return modifyVolume(args);
	if (c == "verify")
		return verify(args);
	if (c == "gc")
		return gc(args);
	if (c == "catalog-rebuild")
		return rebuildCatalog();
	if (c == "wait-snapshot-completed")
		return waitCompleted(args);
	if (c == "restore-instance")
		return restoreInstance(args, progress);
	if (c == "libvirt-hook")
		return libvirtHook(args);
	return fail(errc::kInvalidParameterValue, "unknown command '" + c + "'");
}

Result<hypervisor::Target> Service::targetOf(const Arguments &args) const
{
	hypervisor::Target t;
	t.qmpSocket = args.get("qmp-socket");
	t.domain = args.get("domain");
	if (t.qmpSocket.empty() == t.domain.empty())
		return fail(errc::kMissingParameter,
			    "name the instance with exactly one of --qmp-socket PATH or --domain NAME|UUID");
	if (args.has("connect") && !t.isLibvirt())
		return fail(errc::kInvalidParameterValue, "--connect goes with --domain");
	if (t.isLibvirt())
		t.libvirtUri = args.get("connect", options_.libvirtUri);
	return t;
}

Result<std::shared_ptr<hypervisor::Driver>> Service::driverFor(const hypervisor::Target &target)
{
	std::lock_guard lock(driversMutex_);
	if (options_.background)
		if (auto d = drivers_[target.key()].lock())
			return d;
	// The driver's NBD socket lives in a directory as long as the driver.
	auto work = engine::WorkDir::create();
	if (!work)
		return std::unexpected(work.error());
	auto driver = hypervisor::connectDriver(target, (*work)->path());
	if (!driver)
		return std::unexpected(driver.error());
	(*driver)->holdWhileAlive(std::shared_ptr<engine::WorkDir>(std::move(*work)));
	if (options_.background)
		drivers_[target.key()] = *driver;
	return *driver;
}

Result<void> Service::syncVolume(const engine::VolumeRecord &v, const std::string &target)
{
	return catalog_->putVolume(volumeRow(v, target));
}

Result<Reply> Service::createSnapshots(const Arguments &args, bool single, const std::string &ownerId,
				       const engine::ProgressFn &progress)
{
	auto req = setRequest(args);
	if (!req)
		return std::unexpected(req.error());
	req->ownerId = ownerId;
	if (single) {
		auto disk = args.require("disk");
		if (!disk)
			return std::unexpected(disk.error());
		req->disks = {*disk};
	}
	req->warn = [](const std::string &w) { std::fprintf(stderr, "virtsnap: warning: %s\n", w.c_str()); };

	// Idempotency: a retried request with the same token gets the same
	// snapshots; the same token with other parameters is an error.
	std::string token = args.get("client-token");
	std::string hash = requestHash(args);
	if (!token.empty()) {
		auto seen = catalog_->getRequest(token);
		if (!seen)
			return std::unexpected(seen.error());
		if (*seen) {
			if ((*seen)->requestHash != hash)
				return fail(errc::kIdempotentMismatch, "client token '" + token +
									 "' was used with other parameters");
			auto ids = Json::parse((*seen)->response);
			Json list = Json::array();
			for (size_t i = 0; ids && i < ids->size(); i++) {
				auto row = catalog_->getSnapshot(ids->at(i).asString());
				if (row && *row)
					list.append(snapshotJson(**row));
			}
			if (single && list.size() == 1)
				return ok(list.at(0));
			Json doc = Json::object();
			doc.set("Snapshots", list);
			return ok(doc);
		}
	}

	auto target = targetOf(args);
	if (!target)
		return std::unexpected(target.error());
	auto driver = driverFor(*target);
	if (!driver)
		return std::unexpected(driver.error());
	req->driver = *driver;
	req->target = target->key();

	// Admission against the pending limit happens before the point in
	// time, so a refused request changes nothing.
	auto instance = (*driver)->instance();
	if (!instance)
		return std::unexpected(instance.error());
	auto disks = engine::selectDisks(**driver, *req);
	if (!disks)
		return std::unexpected(disks.error());
	std::vector<std::string> volumes;
	for (const hypervisor::DiskInfo &d : *disks)
		volumes.push_back(volumeIdFor(instance->key, d.diskId));
	std::vector<std::string> claims = volumes;
	if ((*driver)->oneCaptureAtATime())
		claims.push_back(instance->key);

	std::unique_lock admission(admissionMutex_);
	for (const std::string &vol : volumes) {
		auto pending = catalog_->countPending(vol);
		if (!pending)
			return std::unexpected(pending.error());
		auto record = engine::loadVolume(*store_, vol);
		std::string cls = record && *record ? (*record)->volumeClass : "standard";
		int limit = (cls == "st1" || cls == "sc1") ? 1 : 5;
		if (*pending + admitted_[vol] >= limit)
			return fail(errc::kConcurrentLimit, "volume " + vol + " already has " +
							      std::to_string(*pending + admitted_[vol]) +
							      " pending snapshots (the limit is " + std::to_string(limit) +
							      " for class " + cls + ")");
	}
	for (const std::string &vol : volumes)
		admitted_[vol]++;
	// QEMU 7.2 runs one fleecing job per disk: while one is alive, a new
	// snapshot of that disk waits for it to end and takes its point in
	// time then.
	bool queued = options_.background && !claimCapture(claims);
	admission.unlock();
	// Admitted requests count against the limit until their rows exist
	// (then the rows count); a claimed capture is held until its transfer
	// ends.
	auto unadmit = [this, volumes] {
		std::lock_guard lock(admissionMutex_);
		unadmitLocked(volumes);
	};
	auto release = [this, claims](bool claimed) {
		std::lock_guard lock(admissionMutex_);
		for (const std::string &claim : claims)
			if (claimed)
				capturing_.erase(claim);
		captureFreed_.notify_all();
	};

	if (queued)
		return queueSnapshots(*req, *disks, *instance, volumes, claims, single, token, hash, release);

	auto job = engine::beginSnapshots(*store_, *req);
	if (!job) {
		unadmit();
		release(options_.background);
		return std::unexpected(job.error());
	}
	Result<std::string> recorded;
	{
		// Rows written and admission dropped at once, so no other
		// request counts this one twice.
		std::lock_guard lock(admissionMutex_);
		recorded = recordJob(**job, *req, single, token, hash);
		unadmitLocked(volumes);
	}
	if (!recorded) {
		release(options_.background);
		return std::unexpected(recorded.error());
	}
	std::string jobId = *recorded;
	auto pending = (*job)->pending();
	auto cancel = registerJob(jobId, instance->key);
	if (options_.background && pending.front().state == SnapshotState::Pending) {
		std::shared_ptr<engine::SnapshotJob> owned(std::move(*job));
		auto work = [this, jobId, owned, single, cancel, release] {
			// run() ends the capture, so the disk is free for the next.
			finishJob(jobId, *owned, single, nullptr, cancel);
			release(true);
			unregisterJob(jobId);
		};
		try {
			std::thread(work).detach();
		} catch (const std::system_error &) {
			work(); // no thread to be had: finish here, late but whole
		}
	} else {
		finishJob(jobId, **job, single, progress, cancel);
		release(options_.background);
		unregisterJob(jobId);
	}

	std::vector<std::string> ids;
	for (const engine::SnapshotOutcome &o : pending)
		ids.push_back(o.manifest.snapshotId);
	return replyFor(ids, single);
}

void Service::emitFailure(const engine::SnapshotSetRequest &req, const std::vector<std::string> &ids, bool single,
			  const std::string &why)
{
	if (!events_)
		return;
	std::string now = isoTimeNow();
	if (single) {
		events::SnapshotNotice n;
		n.event = "createSnapshot";
		n.result = "failed";
		n.cause = why;
		n.snapshotId = ids.front();
		auto row = catalog_->getSnapshot(ids.front());
		n.source = row && *row ? (*row)->volumeId : "";
		n.startTime = row && *row ? (*row)->startTime : now;
		n.endTime = now;
		events_->emit(events::toJson(n));
		return;
	}
	events::MultiVolumeNotice n;
	n.result = "failed";
	n.cause = why;
	n.requestId = req.snapshotSetId;
	n.startTime = n.endTime = now;
	for (const std::string &id : ids) {
		auto row = catalog_->getSnapshot(id);
		n.snapshots.push_back({id, row && *row ? (*row)->volumeId : "", "error"});
	}
	events_->emit(events::toJson(n));
}

void Service::unadmitLocked(const std::vector<std::string> &volumes)
{
	for (const std::string &vol : volumes)
		if (--admitted_[vol] <= 0)
			admitted_.erase(vol);
}

bool Service::claimCapture(const std::vector<std::string> &volumes)
{
	if (gcActive_)
		return false;
	for (const std::string &vol : volumes)
		if (capturing_.count(vol))
			return false;
	for (const std::string &vol : volumes)
		capturing_.insert(vol);
	return true;
}

std::shared_ptr<std::atomic<bool>> Service::registerJob(const std::string &jobId, const std::string &instanceKey)
{
	auto cancel = std::make_shared<std::atomic<bool>>(false);
	std::lock_guard lock(jobsMutex_);
	jobs_[jobId] = cancel;
	if (!instanceKey.empty())
		jobInstances_[jobId] = instanceKey;
	return cancel;
}

std::string Service::cancelReason(const std::string &jobId) const
{
	std::lock_guard lock(jobsMutex_);
	auto it = cancelReasons_.find(jobId);
	return it == cancelReasons_.end() ? "" : it->second;
}

void Service::unregisterJob(const std::string &jobId)
{
	// Last thing a job thread does: then the destructor may proceed.
	std::lock_guard lock(jobsMutex_);
	jobs_.erase(jobId);
	jobInstances_.erase(jobId);
	cancelReasons_.erase(jobId);
	jobsDone_.notify_all();
}

Result<Reply> Service::replyFor(const std::vector<std::string> &ids, bool single)
{
	Json list = Json::array();
	for (const std::string &id : ids) {
		auto row = catalog_->getSnapshot(id);
		if (row && *row)
			list.append(snapshotJson(**row));
	}
	Reply reply;
	if (single) {
		reply.doc = list.at(0);
	} else {
		reply.doc = Json::object();
		reply.doc.set("Snapshots", list);
	}
	for (size_t i = 0; i < list.size(); i++)
		if (list.at(i).getString("State") == "error") {
			reply.failure = Error{errc::kIncorrectState,
					      "snapshot " + list.at(i).getString("SnapshotId").value_or("") +
						      " failed: " + list.at(i).getString("StateMessage").value_or("")};
			break;
		}
	return reply;
}

// Rows and the job record exist before any data moves, so a crash from here
// on is found again at restart.
Result<std::string> Service::recordJob(engine::SnapshotJob &job, const engine::SnapshotSetRequest &req, bool single,
				       const std::string &token, const std::string &hash, const std::string &jobIdIn)
{
	auto pending = job.pending();
	std::string jobId = jobIdIn.empty() ? relatedId("job-", pending.front().manifest.snapshotId) : jobIdIn;
	catalog::JobRow jobRow;
	jobRow.jobId = jobId;
	jobRow.kind = single ? "create-snapshot" : "create-snapshots";
	jobRow.state = JobState::Running;
	jobRow.target = req.target;
	jobRow.details = job.cleanupRecord();
	jobRow.pid = ::getpid();
	Json ids = Json::array();
	VS_TRY(catalog_->transaction([&]() -> Result<void> {
		for (const engine::SnapshotOutcome &o : pending) {
			jobRow.snapshotIds.push_back(o.manifest.snapshotId);
			ids.append(Json::string(o.manifest.snapshotId));
			catalog::SnapshotRow row = rowFromManifest(o.manifest, o.state, o.stateMessage);
			// A delete asked while it was queued still holds.
			if (auto before = catalog_->getSnapshot(row.snapshotId); before && *before)
				row.deleteRequested = (*before)->deleteRequested;
			VS_TRY(catalog_->putSnapshot(row));
			auto vol = engine::loadVolume(*store_, o.manifest.volumeId);
			if (vol && *vol)
				VS_TRY(syncVolume(**vol, req.target));
		}
		VS_TRY(catalog_->putJob(jobRow));
		if (!token.empty() && jobIdIn.empty())
			VS_TRY(catalog_->putRequest({token, hash, ids.dump(), isoTimeNow()}));
		return {};
	}));
	return jobId;
}

Result<Reply> Service::queueSnapshots(engine::SnapshotSetRequest req, const std::vector<hypervisor::DiskInfo> &disks,
				      const hypervisor::InstanceInfo &instance, const std::vector<std::string> &volumes,
				      const std::vector<std::string> &claims, bool single, const std::string &token, const std::string &hash,
				      std::function<void(bool)> release)
{
	auto unadmit = [this, &volumes] {
		std::lock_guard lock(admissionMutex_);
		unadmitLocked(volumes);
	};
	// Ids and rows now, the point in time later: the rows say pending and
	// the StartTime is replaced by the real instant when it is taken.
	std::vector<std::string> ids;
	if (!single) {
		auto setId = newResourceId("ss-");
		if (!setId) {
			unadmit();
			return std::unexpected(setId.error());
		}
		req.snapshotSetId = *setId;
	}
	std::string now = isoTimeNow();
	std::vector<catalog::SnapshotRow> rows;
	for (size_t i = 0; i < disks.size(); i++) {
		auto id = newResourceId("snap-");
		if (!id) {
			unadmit();
			return std::unexpected(id.error());
		}
		req.snapshotIds[disks[i].diskId] = *id;
		ids.push_back(*id);
		catalog::SnapshotRow r;
		r.snapshotId = *id;
		r.volumeId = volumes[i];
		r.state = SnapshotState::Pending;
		r.startTime = now;
		r.description = req.description;
		r.name = req.name;
		r.ownerId = req.ownerId;
		r.volumeSize = disks[i].size;
		r.snapshotSetId = req.snapshotSetId;
		r.diskId = disks[i].diskId;
		r.instanceName = instance.name;
		r.tags = req.tags;
		rows.push_back(r);
	}
	std::string jobId = relatedId("job-", ids.front());
	catalog::JobRow jobRow;
	jobRow.jobId = jobId;
	jobRow.kind = single ? "create-snapshot" : "create-snapshots";
	jobRow.state = JobState::Running;
	jobRow.target = req.target;
	jobRow.details = "{}";
	jobRow.pid = ::getpid();
	jobRow.snapshotIds = ids;
	Json idList = Json::array();
	for (const std::string &id : ids)
		idList.append(Json::string(id));
	Result<void> recorded;
	{
		std::lock_guard lock(admissionMutex_);
		recorded = catalog_->transaction([&]() -> Result<void> {
			for (const catalog::SnapshotRow &r : rows)
				VS_TRY(catalog_->putSnapshot(r));
			VS_TRY(catalog_->putJob(jobRow));
			if (!token.empty())
				VS_TRY(catalog_->putRequest({token, hash, idList.dump(), now}));
			return {};
		});
		unadmitLocked(volumes);
	}
	if (!recorded)
		return std::unexpected(recorded.error());
	auto cancel = registerJob(jobId, instance.key);
	auto work = [this, req, claims, single, token, hash, jobId, ids, cancel, release] {
		bool claimed = false;
		{
			std::unique_lock lock(admissionMutex_);
			captureFreed_.wait_for(lock, std::chrono::hours(24 * 365), [&] {
				if (cancel->load() || cancelRequested())
					return true;
				claimed = claimCapture(claims);
				return claimed;
			});
		}
		auto fail = [&](const std::string &why) {
			for (const std::string &id : ids) {
				auto row = catalog_->getSnapshot(id);
				if (row && *row) {
					(*row)->state = SnapshotState::Error;
					(*row)->stateMessage = why;
					(void)catalog_->putSnapshot(**row);
				}
			}
			if (auto job = catalog_->getJob(jobId); job && *job) {
				(*job)->state = JobState::Failed;
				(void)catalog_->putJob(**job);
			}
			emitFailure(req, ids, single, why);
		};
		if (!claimed) {
			std::string reason = cancelReason(jobId);
			fail(reason.empty() ? "interrupted: virtsnapd stopped before the point in time was taken" : reason);
		} else if (auto job = engine::beginSnapshots(*store_, req); !job) {
			fail(job.error().toString());
		} else if (auto recorded = recordJob(**job, req, single, token, hash, jobId); !recorded) {
			fail(recorded.error().toString());
		} else {
			finishJob(jobId, **job, single, nullptr, cancel);
		}
		release(claimed);
		unregisterJob(jobId);
	};
	try {
		std::thread(work).detach();
	} catch (const std::system_error &) {
		cancel->store(true); // ends it at once, its rows in error
		work();
	}
	return replyFor(ids, single);
}

void Service::finishJob(const std::string &jobId, engine::SnapshotJob &job, bool single,
			const engine::ProgressFn &progress, std::shared_ptr<std::atomic<bool>> cancel)
{
	// A set that failed at its point in time has nothing to move.
	bool transfers = job.pending().front().state == SnapshotState::Pending;
	if (options_.background && transfers) {
		// Pending until a transfer slot is free: the point in time is
		// already held by the capture.
		std::unique_lock lock(jobsMutex_);
		slotFree_.wait(lock, [&] { return transfersRunning_ < options_.maxParallelJobs || cancel->load(); });
		transfersRunning_++;
	}
	std::vector<engine::SnapshotOutcome> outcomes;
	{
		std::vector<std::string> ids;
		for (const engine::SnapshotOutcome &o : job.pending())
			ids.push_back(o.manifest.snapshotId);
		// Progress reaches the catalog at most every half second.
		std::mutex progressMutex;
		auto lastWrite = std::chrono::steady_clock::now();
		int lastPct = -1;
		engine::ProgressFn tracked = [&](uint64_t done, uint64_t total) {
			if (progress)
				progress(done, total);
			int pct = total ? int(done * 100 / total) : 100;
			std::lock_guard lock(progressMutex);
			auto now = std::chrono::steady_clock::now();
			if (pct == lastPct || now - lastWrite < std::chrono::milliseconds(500))
				return;
			lastPct = pct;
			lastWrite = now;
			for (const std::string &id : ids)
				(void)catalog_->transaction([&]() -> Result<void> {
					auto row = catalog_->getSnapshot(id);
					if (row && *row && (*row)->state == SnapshotState::Pending) {
						(*row)->progress = std::min(pct, 99);
						return catalog_->putSnapshot(**row);
					}
					return {};
				});
		};
		outcomes = job.run(tracked, [cancel] { return cancel->load(); });
	}
	// Cancelled for a reason the user should read (the domain stopped).
	if (std::string reason = cancelReason(jobId); !reason.empty())
		for (engine::SnapshotOutcome &o : outcomes)
			if (o.state == SnapshotState::Error)
				o.stateMessage = reason;
	if (options_.background && transfers) {
		std::lock_guard lock(jobsMutex_);
		transfersRunning_--;
		slotFree_.notify_all();
	}

	bool allOk = true;
	for (const engine::SnapshotOutcome &o : outcomes) {
		allOk &= o.state == SnapshotState::Completed;
		if (o.state == SnapshotState::Completed)
			(void)catalog_->clearBitmapsSuspect(o.manifest.volumeId);
		(void)catalog_->transaction([&]() -> Result<void> {
			auto before = catalog_->getSnapshot(o.manifest.snapshotId);
			if (before && *before && (*before)->deleteRequested) {
				// A delete of a pending snapshot takes effect now, as on EBS.
				if (o.state == SnapshotState::Completed)
					(void)store_->deleteManifest(o.manifest.snapshotId);
				return catalog_->removeSnapshot(o.manifest.snapshotId);
			}
			return catalog_->putSnapshot(rowFromManifest(o.manifest, o.state, o.stateMessage));
		});
	}
	if (auto row = catalog_->getJob(jobId); row && *row) {
		(*row)->state = allOk ? JobState::Done : JobState::Failed;
		(*row)->updated = isoTimeNow();
		(void)catalog_->putJob(**row);
	}

	if (!events_)
		return;
	std::string end = isoTimeNow();
	if (single) {
		const engine::SnapshotOutcome &o = outcomes.front();
		events::SnapshotNotice n;
		n.event = "createSnapshot";
		n.result = o.state == SnapshotState::Completed ? "succeeded" : "failed";
		n.cause = o.stateMessage;
		n.snapshotId = o.manifest.snapshotId;
		n.source = o.manifest.volumeId;
		n.startTime = o.manifest.startTime;
		n.endTime = end;
		events_->emit(events::toJson(n));
	} else {
		events::MultiVolumeNotice n;
		n.result = allOk ? "succeeded" : "failed";
		n.cause = allOk ? "" : outcomes.front().stateMessage;
		n.requestId = outcomes.front().manifest.snapshotSetId;
		n.startTime = outcomes.front().manifest.startTime;
		n.endTime = end;
		for (const engine::SnapshotOutcome &o : outcomes)
			n.snapshots.push_back({o.manifest.snapshotId, o.manifest.volumeId, name(o.state)});
		events_->emit(events::toJson(n));
	}
}

Result<Reply> Service::describeSnapshots(const Arguments &args)
{
	for (const std::string &id : args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	std::vector<catalog::Filter> filters;
	for (const std::string &spec : args.all("filter")) {
		auto f = parseFilter(spec);
		if (!f)
			return std::unexpected(f.error());
		filters.push_back(*f);
	}
	int maxResults = 0;
	if (args.has("max-results")) {
		auto n = parseInt("max-results", args.get("max-results"), 5, 1000);
		if (!n)
			return std::unexpected(n.error());
		maxResults = int(*n);
	}
	auto page = catalog_->describeSnapshots(filters, args.all("snapshot-id"), maxResults, args.get("next-token"));
	if (!page)
		return std::unexpected(page.error());
	Json list = Json::array();
	for (const catalog::SnapshotRow &r : page->snapshots)
		list.append(snapshotJson(r));
	Json doc = Json::object();
	doc.set("Snapshots", list);
	if (!page->nextToken.empty())
		doc.set("NextToken", Json::string(page->nextToken));
	return ok(doc);
}

Result<Reply> Service::deleteSnapshot(const Arguments &args)
{
	auto id = args.require("snapshot-id");
	if (!id)
		return std::unexpected(id.error());
	VS_TRY(checkSnapshotId(*id));
	Json j = Json::object();
	j.set("SnapshotId", Json::string(*id));
	// One transaction: a job finishing meanwhile sees the request or not,
	// never half of it.
	VS_TRY(catalog_->transaction([&]() -> Result<void> {
		auto row = catalog_->getSnapshot(*id);
		if (!row)
			return std::unexpected(row.error());
		if (!*row)
			return fail(errc::kSnapshotNotFound, "snapshot " + *id + " does not exist");
		if ((*row)->state == SnapshotState::Pending) {
			// As on EBS: the delete takes effect when the snapshot completes.
			(*row)->deleteRequested = true;
			j.set("Deleted", Json::boolean(false));
			j.set("DeleteOnCompletion", Json::boolean(true));
			return catalog_->putSnapshot(**row);
		}
		if ((*row)->state == SnapshotState::Completed) {
			auto removed = store_->deleteManifest(*id);
			if (!removed && removed.error().code != errc::kSnapshotNotFound)
				return std::unexpected(removed.error());
		}
		j.set("Deleted", Json::boolean(true));
		return catalog_->removeSnapshot(*id);
	}));
	return ok(j);
}

Result<Reply> Service::createVolume(const Arguments &args, const engine::ProgressFn &progress)
{
	engine::RestoreRequest req;
	std::string id = args.get("snapshot-id");
	std::string target = args.get("target");
	if (args.has("domain") || args.has("qmp-socket")) {
		// A disk of an instance: its latest snapshot unless one is
		// named, into a new file beside its image unless --target says.
		auto disk = args.require("disk");
		if (!disk)
			return std::unexpected(disk.error());
		auto instanceTarget = targetOf(args);
		if (!instanceTarget)
			return std::unexpected(instanceTarget.error());
		auto driver = driverFor(*instanceTarget);
		if (!driver)
			return std::unexpected(driver.error());
		auto instance = (*driver)->instance();
		if (!instance)
			return std::unexpected(instance.error());
		auto info = (*driver)->disk(*disk);
		if (!info)
			return std::unexpected(info.error());
		std::string volumeId = volumeIdFor(instance->key, info->diskId);
		if (id.empty()) {
			auto page = catalog_->describeSnapshots(
				{{"volume-id", {volumeId}}, {"status", {"completed"}}}, {}, 0, "");
			if (!page)
				return std::unexpected(page.error());
			if (page->snapshots.empty())
				return fail(errc::kSnapshotNotFound, "disk " + *disk + " of " + (*driver)->describe() +
									     " (" + volumeId + ") has no completed snapshot");
			id = page->snapshots.back().snapshotId; // by start time: the latest last
		}
		if (target.empty()) {
			fs::path image = info->filename;
			std::string format = args.get("format", "qcow2");
			target = (image.parent_path() / (image.stem().string() + "-" + id + "." + format)).string();
		}
	}
	if (id.empty())
		return fail(errc::kMissingParameter, "--snapshot-id is required (or --domain NAME --disk DISK)");
	if (target.empty())
		return fail(errc::kMissingParameter, "--target is required");
	VS_TRY(checkSnapshotId(id));
	auto row = catalog_->getSnapshot(id);
	if (row && *row && (*row)->state != SnapshotState::Completed)
		return fail(errc::kIncorrectState, "snapshot " + id + " is " + name((*row)->state) + ", not completed");
	req.snapshotId = id;
	req.target = target;
	req.format = args.get("format", "qcow2");
	req.progress = progress;
	auto m = engine::createVolume(*store_, req);
	if (!m)
		return std::unexpected(m.error());
	Json j = Json::object();
	j.set("SnapshotId", Json::string(m->snapshotId));
	j.set("VolumeId", Json::string(m->volumeId));
	j.set("Target", Json::string(req.target.string()));
	j.set("Format", Json::string(req.format));
	j.set("Size", Json::integer(int64_t(m->volumeSize)));
	return ok(j);
}

Result<Reply> Service::changeTags(const Arguments &args, bool create)
{
	auto resource = args.require("resource");
	if (!resource)
		return std::unexpected(resource.error());
	if (!args.has("tag"))
		return fail(errc::kMissingParameter, "--tag is required");
	auto tags = engine::parseTags(args.all("tag"), !create);
	if (!tags)
		return std::unexpected(tags.error());
	if (isSnapshotId(*resource)) {
		// Pending snapshots have no manifest yet: their tags live in
		// the catalog until the manifest is written with them.
		VS_TRY(catalog_->transaction([&]() -> Result<void> {
			auto row = catalog_->getSnapshot(*resource);
			if (!row)
				return std::unexpected(row.error());
			if (!*row)
				return fail(errc::kSnapshotNotFound, "snapshot " + *resource + " does not exist");
			// The tags live in the manifest, which a pending snapshot
			// does not have yet.
			if ((*row)->state != SnapshotState::Completed)
				return fail(errc::kIncorrectState, "snapshot " + *resource + " is " + name((*row)->state) +
									   "; its tags can change once it is completed");
			VS_TRY(create ? engine::createTags(*store_, *resource, *tags)
				      : engine::deleteTags(*store_, *resource, *tags));
			auto m = store_->getManifest(*resource);
			if (!m)
				return std::unexpected(m.error());
			(*row)->tags = m->tags;
			return catalog_->putSnapshot(**row);
		}));
	} else if (isVolumeId(*resource)) {
		VS_TRY(create ? engine::createTags(*store_, *resource, *tags)
			      : engine::deleteTags(*store_, *resource, *tags));
		auto v = engine::loadVolume(*store_, *resource);
		if (v && *v) {
			auto existing = catalog_->getVolume(*resource);
			VS_TRY(syncVolume(**v, existing && *existing ? (*existing)->target : ""));
		}
	} else {
		return fail(errc::kInvalidParameterValue, "'" + *resource + "' is neither a snap- nor a vol- id");
	}
	Json j = Json::object();
	j.set("Resource", Json::string(*resource));
	return ok(j);
}

Result<Reply> Service::registerInstance(const Arguments &args)
{
	auto target = targetOf(args);
	if (!target)
		return std::unexpected(target.error());
	std::string hib = args.get("hibernation-enabled", "false");
	if (hib != "true" && hib != "false")
		return fail(errc::kInvalidParameterValue, "--hibernation-enabled must be true or false");
	auto driver = driverFor(*target);
	if (!driver)
		return std::unexpected(driver.error());
	auto instance = (*driver)->instance();
	if (!instance)
		return std::unexpected(instance.error());
	engine::InstanceRecord r{instanceIdFor(instance->key), instance->key, instance->name, hib == "true"};
	VS_TRY(engine::saveInstance(*store_, r));
	Json j = Json::object();
	j.set("InstanceId", Json::string(r.instanceId));
	j.set("Name", Json::string(r.name));
	j.set("HibernationEnabled", Json::boolean(r.hibernationEnabled));
	return ok(j);
}

Result<Reply> Service::describeVolumes(const Arguments &args)
{
	for (const std::string &id : args.all("volume-id"))
		if (!isVolumeId(id))
			return fail(errc::kInvalidParameterValue, "'" + id + "' is not a volume id (vol- and 17 hex digits)");
	std::vector<std::string> ids = args.all("volume-id");
	if (args.has("qmp-socket") || args.has("domain")) {
		// The disks of that instance, registered on first sight.
		auto target = targetOf(args);
		if (!target)
			return std::unexpected(target.error());
		std::string socket = target->key();
		auto d = driverFor(*target);
		if (!d)
			return std::unexpected(d.error());
		auto instance = (*d)->instance();
		if (!instance)
			return std::unexpected(instance.error());
		auto disks = (*d)->disks();
		if (!disks)
			return std::unexpected(disks.error());
		std::vector<std::string> seen;
		for (const hypervisor::DiskInfo &disk : *disks) {
			std::string vol = volumeIdFor(instance->key, disk.diskId);
			auto record = engine::loadVolume(*store_, vol);
			if (!record)
				return std::unexpected(record.error());
			engine::VolumeRecord v = record->value_or(
				engine::VolumeRecord{vol, instance->key, instance->name, disk.diskId, disk.size, "standard", {}});
			v.size = disk.size;
			v.instanceName = instance->name;
			VS_TRY(engine::saveVolume(*store_, v));
			VS_TRY(syncVolume(v, socket));
			seen.push_back(vol);
		}
		if (ids.empty())
			ids = seen;
	}
	auto rows = catalog_->listVolumes(ids);
	if (!rows)
		return std::unexpected(rows.error());
	for (const std::string &id : ids)
		if (std::none_of(rows->begin(), rows->end(), [&](const catalog::VolumeRow &r) { return r.volumeId == id; }))
			return fail(errc::kVolumeNotFound, "volume " + id + " is not known here");
	Json list = Json::array();
	for (const catalog::VolumeRow &r : *rows)
		list.append(volumeJson(r));
	Json doc = Json::object();
	doc.set("Volumes", list);
	return ok(doc);
}

Result<Reply> Service::modifyVolume(const Arguments &args)
{
	auto id = args.require("volume-id");
	if (!id)
		return std::unexpected(id.error());
	auto cls = args.require("volume-class");
	if (!cls)
		return std::unexpected(cls.error());
	if (*cls != "standard" && *cls != "st1" && *cls != "sc1")
		return fail(errc::kInvalidParameterValue, "--volume-class must be standard, st1 or sc1");
	auto v = engine::loadVolume(*store_, *id);
	if (!v)
		return std::unexpected(v.error());
	if (!*v)
		return fail(errc::kVolumeNotFound, "volume " + *id + " is not known here");
	(*v)->volumeClass = *cls;
	VS_TRY(engine::saveVolume(*store_, **v));
	auto existing = catalog_->getVolume(*id);
	VS_TRY(syncVolume(**v, existing && *existing ? (*existing)->target : ""));
	auto row = catalog_->getVolume(*id);
	return ok(row && *row ? volumeJson(**row) : Json::object());
}

Result<Reply> Service::verify(const Arguments &args)
{
	for (const std::string &id : args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	auto report = store::verifySnapshots(*store_, args.all("snapshot-id"));
	if (!report)
		return std::unexpected(report.error());
	Json list = Json::array();
	std::string damaged;
	for (const auto &snap : report->snapshots) {
		Json j = Json::object();
		j.set("SnapshotId", Json::string(snap.snapshotId));
		j.set("Status", Json::string(snap.ok ? "ok" : "damaged"));
		Json problems = Json::array();
		for (const std::string &p : snap.problems)
			problems.append(Json::string(p));
		j.set("Problems", problems);
		list.append(j);
		if (!snap.ok)
			damaged += (damaged.empty() ? "" : ", ") + snap.snapshotId;
	}
	Json doc = Json::object();
	doc.set("Snapshots", list);
	Reply reply = ok(doc);
	if (!damaged.empty())
		reply.failure = Error{errc::kCorrupt, "damaged snapshots: " + damaged};
	return reply;
}

Result<Reply> Service::gc(const Arguments &args)
{
	store::GcOptions opts;
	if (args.has("grace-seconds")) {
		auto n = parseInt("grace-seconds", args.get("grace-seconds"), 0, 365 * 86400);
		if (!n)
			return std::unexpected(n.error());
		opts.grace = std::chrono::seconds(*n);
	}
	opts.dryRun = args.has("dry-run");
	// No snapshot may be in flight while chunks are swept: one begun
	// earlier relies on its parent's chunks even if the parent has just
	// been deleted. New ones queue until gc ends.
	{
		std::lock_guard lock(admissionMutex_);
		if (!capturing_.empty() || !admitted_.empty())
			return fail(errc::kIncorrectState,
				    "snapshots are in flight; run gc once they have completed");
		gcActive_ = true;
	}
	auto report = store::collectGarbage(*store_, opts);
	{
		std::lock_guard lock(admissionMutex_);
		gcActive_ = false;
		captureFreed_.notify_all();
	}
	if (!report)
		return std::unexpected(report.error());
	Json j = Json::object();
	j.set("DryRun", Json::boolean(opts.dryRun));
	j.set("PacksRemoved", Json::integer(int64_t(report->packsRemoved)));
	j.set("PacksRepacked", Json::integer(int64_t(report->packsRepacked)));
	j.set("BytesFreed", Json::integer(int64_t(report->bytesFreed)));
	j.set("TmpFilesRemoved", Json::integer(int64_t(report->tmpFilesRemoved)));
	return ok(j);
}

Result<Reply> Service::rebuildCatalog()
{
	// Pending rows exist only in the catalog: clearing them would lose
	// snapshots in flight, their limits and their deferred deletes.
	if (runningJobs() > 0)
		return fail(errc::kIncorrectState, "snapshots are in flight; rebuild the catalog once they have completed");
	auto manifests = store_->listManifests();
	if (!manifests)
		return std::unexpected(manifests.error());
	auto volumes = engine::listVolumes(*store_);
	if (!volumes)
		return std::unexpected(volumes.error());
	VS_TRY(catalog_->transaction([&]() -> Result<void> {
		VS_TRY(catalog_->clear());
		for (const store::Manifest &m : *manifests)
			VS_TRY(catalog_->putSnapshot(rowFromManifest(m, SnapshotState::Completed)));
		for (const engine::VolumeRecord &v : *volumes)
			VS_TRY(syncVolume(v));
		return {};
	}));
	Json j = Json::object();
	j.set("Snapshots", Json::integer(int64_t(manifests->size())));
	j.set("Volumes", Json::integer(int64_t(volumes->size())));
	return ok(j);
}

Result<Reply> Service::waitCompleted(const Arguments &args)
{
	if (!args.has("snapshot-id"))
		return fail(errc::kMissingParameter, "--snapshot-id is required");
	for (const std::string &id : args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	int64_t timeout = 3600;
	if (args.has("timeout")) {
		auto n = parseInt("timeout", args.get("timeout"), 1, 7 * 86400);
		if (!n)
			return std::unexpected(n.error());
		timeout = *n;
	}
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
	for (;;) {
		auto page = catalog_->describeSnapshots({}, args.all("snapshot-id"), 0, "");
		if (!page)
			return std::unexpected(page.error());
		bool pending = false;
		Json list = Json::array();
		std::string failed;
		for (const catalog::SnapshotRow &r : page->snapshots) {
			list.append(snapshotJson(r));
			pending |= r.state == SnapshotState::Pending;
			if (r.state == SnapshotState::Error)
				failed += (failed.empty() ? "" : ", ") + r.snapshotId + " (" + r.stateMessage + ")";
		}
		if (!failed.empty() || !pending) {
			Json doc = Json::object();
			doc.set("Snapshots", list);
			Reply reply = ok(doc);
			if (!failed.empty())
				reply.failure = Error{errc::kIncorrectState, "snapshot failed: " + failed};
			return reply;
		}
		if (std::chrono::steady_clock::now() >= deadline)
			return fail(errc::kIncorrectState, "timed out after " + std::to_string(timeout) +
								   " s waiting for the snapshots to complete");
		if (cancelRequested())
			return fail(errc::kIncorrectState, "interrupted while waiting for the snapshots to complete");
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	}
}

Result<Reply> Service::restoreInstance(const Arguments &args, const engine::ProgressFn &progress)
{
	auto setId = args.require("snapshot-set-id");
	if (!setId)
		return std::unexpected(setId.error());
	auto domain = args.require("domain");
	if (!domain)
		return std::unexpected(domain.error());
	auto target = targetOf(args);
	if (!target)
		return std::unexpected(target.error());
	auto connected = hypervisor::LibvirtDriver::connect(target->libvirtUri, target->domain);
	if (!connected)
		return std::unexpected(connected.error());
	hypervisor::LibvirtDriver &driver = **connected;
	auto instance = driver.instance();
	if (!instance)
		return std::unexpected(instance.error());
	if (instance->status != "shut off")
		return fail(errc::kIncorrectState, driver.describe() + " is " + instance->status +
							   "; restore-instance writes its disks only while it is shut off");
	auto desc = driver.description();
	if (!desc)
		return std::unexpected(desc.error());

	// Every disk of the set must find its disk in the domain, and every
	// snapshot must be complete, before anything is written.
	auto page = catalog_->describeSnapshots({}, {}, 0, "");
	if (!page)
		return std::unexpected(page.error());
	std::vector<catalog::SnapshotRow> set;
	for (const catalog::SnapshotRow &r : page->snapshots)
		if (r.snapshotSetId == *setId)
			set.push_back(r);
	const std::vector<catalog::SnapshotRow> *rows = &set;
	if (rows->empty())
		return fail(errc::kSnapshotNotFound, "no snapshot set '" + *setId + "' is known here");
	struct Work {
		std::string disk, snapshotId;
		hypervisor::DomainDisk image;
	};
	std::vector<Work> work;
	for (const catalog::SnapshotRow &r : *rows) {
		if (r.state != SnapshotState::Completed)
			return fail(errc::kIncorrectState, "snapshot " + r.snapshotId + " of " + *setId + " is " + name(r.state));
		if (volumeIdFor(instance->key, r.diskId) != r.volumeId)
			return fail(errc::kInvalidParameterValue, *setId + " was taken of another instance (" +
									  r.instanceName + "), not of " + driver.describe());
		auto d = std::find_if(desc->disks.begin(), desc->disks.end(),
				      [&](const hypervisor::DomainDisk &x) { return x.target == r.diskId; });
		if (d == desc->disks.end())
			return fail(errc::kDiskNotFound, driver.describe() + " has no disk " + r.diskId + " any more");
		if (d->format != "qcow2" && d->format != "raw")
			return fail(errc::kInvalidParameterValue, "disk " + r.diskId + " is " + d->format +
									  "; restore-instance writes qcow2 and raw images");
		work.push_back({r.diskId, r.snapshotId, *d});
	}
	{
		std::lock_guard lock(admissionMutex_);
		if (!restoring_.insert(instance->key).second)
			return fail(errc::kIncorrectState, "another restore-instance of " + driver.describe() + " is running");
	}
	struct Unmark {
		Service *s;
		std::string key;
		~Unmark()
		{
			std::lock_guard lock(s->admissionMutex_);
			s->restoring_.erase(key);
		}
	} unmark{this, instance->key};

	// Each image is restored beside itself and renamed over it: a failure
	// leaves the domain's disks as they were, the ones done excepted.
	Json list = Json::array();
	for (const Work &w : work) {
		fs::path image = w.image.source;
		fs::path temp = image.parent_path() / ("." + image.filename().string() + ".virtsnap-restore");
		std::error_code ec;
		fs::remove(temp, ec);
		engine::RestoreRequest req{w.snapshotId, temp, w.image.format, progress};
		auto m = engine::createVolume(*store_, req);
		if (!m)
			return fail(m.error().code, "disk " + w.disk + ": " + m.error().message);
		// The restored image takes the owner and mode of the one it
		// replaces, or it does not replace it.
		struct stat st {};
		if (::stat(image.c_str(), &st) == 0 &&
		    (::chown(temp.c_str(), st.st_uid, st.st_gid) != 0 || ::chmod(temp.c_str(), st.st_mode & 07777) != 0)) {
			int e = errno;
			fs::remove(temp, ec);
			return failErrno("give the restored " + image.string() + " its owner and mode", e);
		}
		if (::rename(temp.c_str(), image.c_str()) != 0) {
			int e = errno;
			fs::remove(temp, ec);
			return failErrno("replace " + image.string(), e);
		}
		Json j = Json::object();
		j.set("Disk", Json::string(w.disk));
		j.set("SnapshotId", Json::string(w.snapshotId));
		j.set("Target", Json::string(image.string()));
		list.append(j);
	}
	// The new images hold no bitmaps: every checkpoint is stale, and the
	// next snapshot of each disk reads it in full.
	driver.imagesReplaced();
	Json doc = Json::object();
	doc.set("SnapshotSetId", Json::string(*setId));
	doc.set("Domain", Json::string(desc->name));
	doc.set("Volumes", list);
	return ok(doc);
}

Result<Reply> Service::libvirtHook(const Arguments &args)
{
	std::string name = args.get("domain"), uuid = args.get("uuid");
	std::string op = args.get("operation"), sub = args.get("sub-operation");
	if (uuid.empty())
		return fail(errc::kMissingParameter, "the hook gave no domain UUID for '" + name + "'");
	const std::string key = "uuid:" + uuid;
	Json doc = Json::object();
	doc.set("Domain", Json::string(name));
	doc.set("Event", Json::string(op + " " + sub));

	if (op == "migrate" && sub == "begin") {
		std::lock_guard lock(admissionMutex_);
		if (capturing_.count(key))
			return fail(errc::kIncorrectState, "domain '" + name +
								   "' has a snapshot in progress; migrate it once "
								   "the snapshot completes (virtsnap wait snapshot-completed)");
	} else if (op == "prepare" && sub == "begin") {
		std::lock_guard lock(admissionMutex_);
		if (restoring_.count(key))
			return fail(errc::kIncorrectState, "virtsnap restore-instance is writing the disks of domain '" +
								   name + "'; start it once the restore ends");
	} else if ((op == "stopped" || op == "release") && sub == "end") {
		std::string reason = "domain '" + name + "' stopped during the snapshot (libvirt: " + op + ")";
		int cancelled = 0;
		{
			std::lock_guard lock(jobsMutex_);
			for (const auto &[jobId, instanceKey] : jobInstances_)
				if (instanceKey == key && !cancelReasons_.count(jobId)) {
					cancelReasons_[jobId] = reason;
					jobs_[jobId]->store(true);
					cancelled++;
				}
		}
		{
			// Queued jobs wait for a claim: wake them to see the cancel.
			std::lock_guard lock(admissionMutex_);
			captureFreed_.notify_all();
		}
		(void)catalog_->markBitmapsSuspect(key);
		doc.set("CancelledJobs", Json::integer(cancelled));
	} else if ((op == "started" || op == "reconnect") && sub == "begin") {
		reconcileLater(uuid);
	}
	return ok(doc);
}

void Service::reconcileLater(const std::string &uuid)
{
	std::string jobId = "reconcile-" + uuid;
	{
		std::lock_guard lock(jobsMutex_);
		if (jobs_.count(jobId))
			return; // one is on its way
	}
	registerJob(jobId);
	auto work = [this, uuid, jobId] {
		// libvirt answers once the hook that called us has returned.
		auto driver = hypervisor::connectDriver({"", options_.libvirtUri, uuid}, {});
		if (driver) {
			auto notes = engine::reconcileInstance(*store_, **driver);
			if (!notes)
				std::fprintf(stderr, "virtsnapd: reconcile of domain %s: %s\n", uuid.c_str(),
					     notes.error().message.c_str());
			else
				for (const std::string &n : *notes)
					std::fprintf(stderr, "virtsnapd: domain %s: %s\n", uuid.c_str(), n.c_str());
		}
		unregisterJob(jobId);
	};
	try {
		std::thread(work).detach();
	} catch (const std::system_error &) {
		unregisterJob(jobId);
	}
}

void Service::recoverInterruptedJobs()
{
	auto jobs = catalog_->jobsInState(JobState::Running);
	if (!jobs)
		return;
	// A job whose process still runs (this one, another CLI, a daemon) is
	// not interrupted; the process name guards against a reused pid.
	auto alive = [](int64_t pid) {
		if (pid <= 0)
			return false;
		if (pid == ::getpid())
			return true;
		std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
		std::string name;
		std::getline(comm, name);
		return name == "virtsnap" || name == "virtsnapd";
	};
	for (catalog::JobRow &job : *jobs) {
		if (alive(job.pid))
			continue;
		std::string note = "interrupted: virtsnapd stopped during the transfer";
		if (auto driver = hypervisor::connectDriver(hypervisor::Target::parse(job.target), {}))
			(*driver)->removeLeftovers(job.details);
		else
			note += " (and its instance is gone: " + driver.error().message + ")";
		for (const std::string &id : job.snapshotIds) {
			auto row = catalog_->getSnapshot(id);
			if (row && *row && (*row)->state == SnapshotState::Pending) {
				(*row)->state = SnapshotState::Error;
				(*row)->stateMessage = note;
				(void)catalog_->putSnapshot(**row);
			}
		}
		job.state = JobState::Interrupted;
		job.updated = isoTimeNow();
		(void)catalog_->putJob(job);
	}
}

} // namespace virtsnap::daemon
