#include "instant_job.h"

#include <unistd.h>

#include <chrono>
#include <map>
#include <cstdio>
#include <thread>

#include "catalog/catalog.h"
#include "driver_cache.h"
#include "hypervisor/target.h"
#include "core/ids.h"
#include "engine/instant_restore.h"
#include "events/dispatcher.h"
#include "events/event.h"

namespace virtsnap::daemon {

namespace {

constexpr std::chrono::milliseconds kPullPollInterval{250};

JobState jobStateOf(const InstantState &s)
{
	if (s.state == "available")
		return JobState::Done;
	if (s.state == "error")
		return JobState::Failed;
	return JobState::Running;
}

void emitVolumeNotice(Context &ctx, const InstantState &s)
{
	if (!ctx.events)
		return;
	events::VolumeNotice n;
	n.result = s.state == "available" ? "available" : "failed";
	n.cause = s.stateMessage;
	n.requestId = s.jobId;
	n.snapshotId = s.snapshotId;
	n.target = s.target;
	n.readyMillis = s.readyMillis;
	n.copiedMillis = s.copiedMillis;
	n.bytesServed = s.bytesServed;
	n.bytesFromStore = s.bytesFromStore;
	ctx.events->emit(events::toJson(n));
}

} // namespace

int64_t unixMillisNow()
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(
		       std::chrono::system_clock::now().time_since_epoch())
		.count();
}

Json InstantState::toJson() const
{
	Json j = Json::object();
	j.set("JobId", Json::string(jobId));
	j.set("SnapshotId", Json::string(snapshotId));
	j.set("VolumeId", Json::string(volumeId));
	j.set("Target", Json::string(target));
	j.set("OwnerId", Json::string(ownerId));
	j.set("Format", Json::string("qcow2"));
	j.set("Size", Json::integer(int64_t(size)));
	j.set("State", Json::string(state));
	if (!stateMessage.empty())
		j.set("StateMessage", Json::string(stateMessage));
	j.set("ExportId", Json::string(exportId));
	j.set("BackingUri", Json::string(uri));
	j.set("StatsFile", Json::string(statsFile));
	j.set("Instance", Json::string(instance));
	j.set("Disk", Json::string(disk));
	j.set("Speed", Json::integer(int64_t(speed)));
	j.set("StartTime", Json::string(startTime));
	j.set("StartMs", Json::integer(startMs));
	j.set("ReadyMillis", Json::integer(readyMillis));
	if (copiedMillis >= 0)
		j.set("CopiedMillis", Json::integer(copiedMillis));
	j.set("BytesServed", Json::integer(int64_t(bytesServed)));
	j.set("BytesFromStore", Json::integer(int64_t(bytesFromStore)));
	return j;
}

InstantState InstantState::fromJson(const Json &j)
{
	InstantState s;
	s.jobId = j.getString("JobId").value_or("");
	s.snapshotId = j.getString("SnapshotId").value_or("");
	s.volumeId = j.getString("VolumeId").value_or("");
	s.target = j.getString("Target").value_or("");
	s.ownerId = j.getString("OwnerId").value_or("");
	s.size = uint64_t(j.getInt("Size").value_or(0));
	s.state = j.getString("State").value_or("initializing");
	s.stateMessage = j.getString("StateMessage").value_or("");
	s.exportId = j.getString("ExportId").value_or("");
	s.uri = j.getString("BackingUri").value_or("");
	s.statsFile = j.getString("StatsFile").value_or("");
	s.instance = j.getString("Instance").value_or("");
	s.disk = j.getString("Disk").value_or("");
	s.speed = uint64_t(j.getInt("Speed").value_or(0));
	s.startTime = j.getString("StartTime").value_or("");
	s.startMs = j.getInt("StartMs").value_or(0);
	s.readyMillis = j.getInt("ReadyMillis").value_or(0);
	s.copiedMillis = j.getInt("CopiedMillis").value_or(-1);
	s.bytesServed = uint64_t(j.getInt("BytesServed").value_or(0));
	s.bytesFromStore = uint64_t(j.getInt("BytesFromStore").value_or(0));
	return s;
}

Result<std::optional<InstantState>> findInstantRestore(Context &ctx, const std::string &target)
{
	for (JobState st : {JobState::Running, JobState::Failed, JobState::Interrupted, JobState::Done}) {
		VS_ASSIGN(auto jobs, ctx.catalog->jobsInState(st));
		for (const catalog::JobRow &job : jobs) {
			if (job.kind != kInstantKind || job.target != target)
				continue;
			auto j = Json::parse(job.details);
			if (j)
				return std::optional<InstantState>(InstantState::fromJson(*j));
		}
	}
	return std::optional<InstantState>();
}

Result<void> saveInstantState(Context &ctx, const InstantState &s)
{
	catalog::JobRow job;
	VS_ASSIGN(auto existing, ctx.catalog->getJob(s.jobId));
	if (existing)
		job = *existing;
	job.jobId = s.jobId;
	job.kind = kInstantKind;
	job.state = jobStateOf(s);
	job.snapshotIds = {s.snapshotId};
	job.target = s.target;
	job.details = s.toJson().dump();
	job.pid = ::getpid();
	job.updated = isoTimeNow();
	return ctx.catalog->putJob(job);
}

void InstantJob::finish(Context &ctx, InstantState &s)
{
	s.copiedMillis = unixMillisNow() - s.startMs;
	auto reads = engine::endInstantExport(*ctx.store, s.exportId, s.statsFile);
	if (!reads) {
		// The image stands alone all the same; the export is for
		// stop-serving now.
		s.state = "available";
		s.stateMessage = "copied, but its export did not stop: " + reads.error().toString();
	} else {
		s.state = "available";
		s.stateMessage.clear();
		s.bytesServed = reads->served;
		s.bytesFromStore = reads->fromStore;
	}
	if (auto saved = saveInstantState(ctx, s); !saved)
		std::fprintf(stderr, "virtsnap: %s: %s\n", s.jobId.c_str(), saved.error().toString().c_str());
	emitVolumeNotice(ctx, s);
}

void InstantJob::failed(Context &ctx, InstantState &s, const std::string &why)
{
	s.state = "error";
	s.stateMessage = why + " (the image still reads through its export: complete-instant-restore copies the rest)";
	if (auto saved = saveInstantState(ctx, s); !saved)
		std::fprintf(stderr, "virtsnap: %s: %s\n", s.jobId.c_str(), saved.error().toString().c_str());
	emitVolumeNotice(ctx, s);
}

std::vector<InstantState> InstantJob::watch(Context &ctx, std::vector<InstantState> disks,
					   std::shared_ptr<hypervisor::Driver> driver)
{
	auto self = std::make_shared<InstantJob>(ctx, std::move(disks), std::move(driver));
	// Each disk's job id is enrolled, so that complete-instant-restore
	// sees any of them watched; virtsnapd's shutdown cancels them all.
	for (const InstantState &s : self->disks_)
		self->cancel_ = ctx.jobs->enroll(s.jobId);
	if (!ctx.options.background) {
		self->run();
		return self->disks_;
	}
	std::vector<InstantState> now = self->disks_;
	ctx.jobs->start([self] { self->run(); },
			[self] {
				// No thread: the copy runs on in the hypervisor;
				// complete-instant-restore watches it later.
				self->retireAll();
			});
	return now;
}

bool InstantJob::follow(InstantState &s)
{
	for (;;) {
		if (cancel_->load())
			return false; // virtsnapd stops: the row stays initializing, for complete-instant-restore
		auto st = driver_->pullStatus(s.disk);
		if (!st) {
			failed(ctx_, s, "the copy's state cannot be read: " + st.error().toString());
			return true;
		}
		if (st->state == hypervisor::PullStatus::State::Done) {
			finish(ctx_, s);
			return true;
		}
		if (st->state == hypervisor::PullStatus::State::Failed) {
			failed(ctx_, s, "the copy failed: " + st->error);
			return true;
		}
		std::this_thread::sleep_for(kPullPollInterval);
	}
}

void InstantJob::run()
{
	for (size_t i = 0; i < disks_.size(); i++) {
		InstantState &s = disks_[i];
		if (i > 0) {
			if (auto pulled = driver_->startPull(s.disk, s.speed); !pulled) {
				failed(ctx_, s, "the copy did not start: " + pulled.error().toString());
				continue;
			}
		}
		if (!follow(s))
			break;
	}
	retireAll();
}

void InstantJob::retireAll()
{
	for (const InstantState &s : disks_)
		ctx_.jobs->retire(s.jobId);
}

namespace {

// The instant restores of the catalog left initializing by a virtsnapd
// that stopped, by the instance that copies them.
std::map<std::string, std::vector<InstantState>> unwatchedRestores(Context &ctx)
{
	std::map<std::string, std::vector<InstantState>> byInstance;
	auto jobs = ctx.catalog->jobsInState(JobState::Running);
	if (!jobs)
		return byInstance;
	for (const catalog::JobRow &job : *jobs) {
		if (job.kind != kInstantKind || ctx.jobs->enrolled(job.jobId))
			continue;
		auto j = Json::parse(job.details);
		if (!j)
			continue;
		InstantState s = InstantState::fromJson(*j);
		if (s.state == "initializing" && !s.instance.empty())
			byInstance[s.instance].push_back(std::move(s));
	}
	return byInstance;
}

} // namespace

void resumeInstantRestores(Context &ctx)
{
	for (auto &[instance, disks] : unwatchedRestores(ctx)) {
		auto driver = ctx.drivers->get(hypervisor::Target::parse(instance));
		if (!driver) {
			for (InstantState &s : disks)
				InstantJob::failed(ctx, s, "its instance is gone: " + driver.error().message);
			continue;
		}
		// The copy that runs first, then those still to copy.
		std::vector<InstantState> order;
		bool running = false;
		for (InstantState &s : disks) {
			auto st = (*driver)->pullStatus(s.disk);
			if (st && st->state == hypervisor::PullStatus::State::Done) {
				InstantJob::finish(ctx, s);
			} else if (st && st->state == hypervisor::PullStatus::State::Running && !running) {
				order.insert(order.begin(), s);
				running = true;
			} else {
				order.push_back(s);
			}
		}
		while (!running && !order.empty()) {
			if (auto pulled = (*driver)->startPull(order.front().disk, order.front().speed); pulled) {
				running = true;
			} else {
				InstantJob::failed(ctx, order.front(), "the copy did not start again: " + pulled.error().toString());
				order.erase(order.begin());
			}
		}
		if (!order.empty())
			(void)InstantJob::watch(ctx, std::move(order), *driver);
	}
}

} // namespace virtsnap::daemon
