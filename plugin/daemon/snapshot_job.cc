#include "snapshot_job.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>

#include "admission.h"
#include "catalog_rows.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "ec2_output.h"
#include "progress_recorder.h"
#include "engine/maintenance.h"
#include "events/dispatcher.h"
#include "events/event.h"

namespace virtsnap::daemon {

namespace {

const char *kindOf(bool oneDisk)
{
	return oneDisk ? "create-snapshot" : "create-snapshots";
}

catalog::JobRow jobRow(const std::string &jobId, bool oneDisk, const std::string &target, std::string details,
		       std::vector<std::string> ids)
{
	catalog::JobRow row;
	row.jobId = jobId;
	row.kind = kindOf(oneDisk);
	row.state = JobState::Running;
	row.target = target;
	row.details = std::move(details);
	row.pid = ::getpid();
	row.snapshotIds = std::move(ids);
	return row;
}

std::string idList(const std::vector<std::string> &ids)
{
	Json list = Json::array();
	for (const std::string &id : ids)
		list.append(Json::string(id));
	return list.dump();
}

} // namespace

Result<Reply> CreateJob::startNow(Context &ctx, AdmittedCreate admitted, const engine::ProgressFn &progress)
{
	auto self = std::make_shared<CreateJob>(ctx, std::move(admitted));
	self->recordCaptureIntent();
	auto begun = engine::beginSnapshots(*ctx.store, self->a_.request.set);
	if (!begun) {
		self->endCaptureIntent();
		ctx.admission->withdraw(self->a_.volumes);
		self->releaseClaims();
		return std::unexpected(begun.error());
	}
	std::shared_ptr<engine::SnapshotJob> job(std::move(*begun));
	for (const engine::SnapshotOutcome &o : job->pending())
		self->ids_.push_back(o.manifest.snapshotId);
	self->jobId_ = relatedId("job-", self->ids_.front());
	if (auto recorded = ctx.admission->settle(self->a_.volumes, [&] { return self->record(*job, true); });
	    !recorded) {
		self->releaseClaims();
		return std::unexpected(recorded.error());
	}
	self->cancel_ = ctx.jobs->enroll(self->jobId_, self->a_.instance.key);
	auto run = [self, job](const engine::ProgressFn &progress) {
		// finish() ends the capture, so the disks are free for the next.
		self->finish(*job, progress);
		self->releaseClaims();
		self->ctx_.jobs->retire(self->jobId_);
	};
	bool transfers = job->pending().front().state == SnapshotState::Pending;
	if (ctx.options.background && transfers)
		ctx.jobs->start([run] { run(nullptr); }, [run] { run(nullptr); });
	else
		run(progress);
	return self->reply();
}

Result<Reply> CreateJob::queue(Context &ctx, AdmittedCreate admitted)
{
	auto self = std::make_shared<CreateJob>(ctx, std::move(admitted));
	CreateRequest &req = self->a_.request;
	// Ids and rows now, the point in time later: the rows say pending and
	// their StartTime is replaced by the real instant when it is taken.
	auto given = [&]() -> Result<void> {
		if (!req.oneDisk) {
			VS_ASSIGN(req.set.snapshotSetId, newResourceId("ss-"));
		}
		for (const hypervisor::DiskInfo &d : self->a_.disks) {
			VS_ASSIGN(std::string id, newResourceId("snap-"));
			req.set.snapshotIds[d.diskId] = id;
			self->ids_.push_back(id);
		}
		return {};
	}();
	if (!given) {
		ctx.admission->withdraw(self->a_.volumes);
		return std::unexpected(given.error());
	}
	self->jobId_ = relatedId("job-", self->ids_.front());
	std::string now = isoTimeNow();
	auto recorded = ctx.admission->settle(self->a_.volumes, [&] {
		return ctx.catalog->transaction([&]() -> Result<void> {
			for (size_t i = 0; i < self->a_.disks.size(); i++) {
				const hypervisor::DiskInfo &disk = self->a_.disks[i];
				catalog::SnapshotRow r;
				r.snapshotId = self->ids_[i];
				r.volumeId = self->a_.volumes[i];
				r.state = SnapshotState::Pending;
				r.startTime = now;
				r.description = req.set.description;
				r.name = req.set.name;
				r.ownerId = req.set.accountId;
				r.encrypted = false; // encrypted volumes: not yet
				r.volumeSize = disk.size;
				r.snapshotSetId = req.set.snapshotSetId;
				r.diskId = disk.diskId;
				r.instanceName = self->a_.instance.name;
				r.tags = req.set.tags;
				VS_TRY(ctx.catalog->putSnapshot(r));
			}
			VS_TRY(ctx.catalog->putJob(jobRow(self->jobId_, req.oneDisk, req.set.target, "{}", self->ids_)));
			if (!req.clientToken.empty())
				VS_TRY(ctx.catalog->putRequest({req.clientToken, req.requestHash, idList(self->ids_), now}));
			return {};
		});
	});
	if (!recorded)
		return std::unexpected(recorded.error());
	self->cancel_ = ctx.jobs->enroll(self->jobId_, self->a_.instance.key);
	ctx.jobs->start([self] { self->runQueued(); },
			[self] {
				self->cancel_->store(true); // no thread: it ends at once, its rows in error
				self->runQueued();
			});
	return self->reply();
}

void CreateJob::runQueued()
{
	a_.claimed = ctx_.admission->waitClaim(a_.claims, [&] { return cancel_->load() || cancelRequested(); });
	recordCaptureIntent();
	if (!a_.claimed) {
		std::string reason = ctx_.jobs->cancelReason(jobId_);
		failQueued(reason.empty() ? "interrupted: virtsnapd stopped before the point in time was taken" : reason);
	} else if (auto job = engine::beginSnapshots(*ctx_.store, a_.request.set); !job) {
		failQueued(job.error().toString());
	} else if (auto recorded = record(**job, false); !recorded) {
		failQueued(recorded.error().toString());
	} else {
		finish(**job, nullptr);
	}
	releaseClaims();
	ctx_.jobs->retire(jobId_);
}

Result<void> CreateJob::record(engine::SnapshotJob &job, bool newJob)
{
	const CreateRequest &req = a_.request;
	auto pending = job.pending();
	return ctx_.catalog->transaction([&]() -> Result<void> {
		for (const engine::SnapshotOutcome &o : pending) {
			catalog::SnapshotRow row = snapshotRow(o.manifest, o.state, o.stateMessage);
			// A delete asked while it was queued still holds.
			VS_ASSIGN(auto before, ctx_.catalog->getSnapshot(row.snapshotId));
			if (before) {
				row.deleteRequested = before->deleteRequested;
				row.tags = before->tags; // as create-tags left them while queued
			}
			VS_TRY(ctx_.catalog->putSnapshot(row));
			auto volume = engine::loadVolume(*ctx_.store, o.manifest.volumeId);
			if (volume && *volume)
				VS_TRY(ctx_.catalog->putVolume(volumeRow(**volume, req.set.target)));
		}
		VS_TRY(ctx_.catalog->putJob(jobRow(jobId_, req.oneDisk, req.set.target, job.cleanupRecord(), ids_)));
		if (newJob && !req.clientToken.empty())
			VS_TRY(ctx_.catalog->putRequest({req.clientToken, req.requestHash, idList(ids_), isoTimeNow()}));
		return {};
	});
}

void CreateJob::finish(engine::SnapshotJob &job, const engine::ProgressFn &progress)
{
	// A set that failed at its point in time has nothing to move.
	bool transfers = job.pending().front().state == SnapshotState::Pending;
	std::vector<engine::SnapshotOutcome> outcomes;
	{
		// Pending until a transfer slot is free: the point in time is
		// already held by the capture.
		std::optional<JobRunner::Slot> slot;
		if (ctx_.options.background && transfers)
			slot.emplace(*ctx_.jobs, cancel_);
		ProgressRecorder recorder(*ctx_.catalog, ids_, progress);
		outcomes = job.run(std::ref(recorder), [this] { return cancel_->load(); });
	}
	// Cancelled for a reason the user should read (the domain stopped).
	if (std::string reason = ctx_.jobs->cancelReason(jobId_); !reason.empty())
		for (engine::SnapshotOutcome &o : outcomes)
			if (o.state == SnapshotState::Error)
				o.stateMessage = reason;

	bool allOk = true;
	for (engine::SnapshotOutcome &o : outcomes) {
		allOk &= o.state == SnapshotState::Completed;
		// The catalog is an index of the store: a row it fails to write
		// is found again by the next rebuild, and the job must end anyway.
		if (o.state == SnapshotState::Completed)
			(void)ctx_.catalog->clearBitmapsSuspect(o.manifest.volumeId);
		(void)ctx_.catalog->transaction([&]() -> Result<void> {
			VS_ASSIGN(auto before, ctx_.catalog->getSnapshot(o.manifest.snapshotId));
			if (before && before->deleteRequested) {
				// A delete of a pending snapshot takes effect now, as on EBS.
				if (o.state == SnapshotState::Completed)
					(void)engine::deleteSnapshot(*ctx_.store, o.manifest.snapshotId); // gone either way
				return ctx_.catalog->removeSnapshot(o.manifest.snapshotId);
			}
			if (before && o.state == SnapshotState::Completed)
				adoptPendingTags(o.manifest, before->tags);
			return ctx_.catalog->putSnapshot(snapshotRow(o.manifest, o.state, o.stateMessage));
		});
	}
	if (auto row = ctx_.catalog->getJob(jobId_); row && *row) {
		(*row)->state = allOk ? JobState::Done : JobState::Failed;
		(*row)->updated = isoTimeNow();
		(void)ctx_.catalog->putJob(**row); // as above
	}
	emitOutcome(outcomes, allOk);
}

void CreateJob::recordCaptureIntent()
{
	// A process killed between the capture's first change to the instance
	// and record() would otherwise leave a scratch node and file that no
	// job row names, and that recovery could not find.
	a_.request.set.beforeCapture = [this](const std::vector<std::string> &ids, const std::string &cleanup) {
		const CreateRequest &req = a_.request;
		intentJobId_ = relatedId("job-", ids.front());
		return ctx_.catalog->putJob(jobRow(intentJobId_, req.oneDisk, req.set.target, cleanup, ids));
	};
}

void CreateJob::endCaptureIntent()
{
	// The capture failed and undid what it made: its row must not stay
	// running for the next start's recovery.
	if (intentJobId_.empty())
		return;
	if (auto row = ctx_.catalog->getJob(intentJobId_); row && *row) {
		(*row)->state = JobState::Failed;
		(*row)->updated = isoTimeNow();
		(void)ctx_.catalog->putJob(**row); // recovery would end it as well
	}
}

void CreateJob::adoptPendingTags(store::Manifest &manifest, const store::Tags &tags)
{
	// Inside the catalog transaction that completes the row, so no
	// create-tags can come between the manifest and the row.
	if (tags == manifest.tags)
		return;
	if (auto written = engine::replaceTags(*ctx_.store, manifest.snapshotId, tags); !written) {
		// The row keeps the manifest's tags, which the store says are true.
		std::fprintf(stderr, "virtsnapd: %s: tags given while pending are lost: %s\n",
			     manifest.snapshotId.c_str(), written.error().toString().c_str());
		return;
	}
	manifest.tags = tags;
}

void CreateJob::failQueued(const std::string &why)
{
	// As in finish(): the catalog takes what it can, the job ends anyway.
	for (const std::string &id : ids_) {
		auto row = ctx_.catalog->getSnapshot(id);
		if (row && *row) {
			(*row)->state = SnapshotState::Error;
			(*row)->stateMessage = why;
			(void)ctx_.catalog->putSnapshot(**row);
		}
	}
	if (auto job = ctx_.catalog->getJob(jobId_); job && *job) {
		(*job)->state = JobState::Failed;
		(void)ctx_.catalog->putJob(**job);
	}
	emitFailure(why);
}

void CreateJob::emitOutcome(const std::vector<engine::SnapshotOutcome> &outcomes, bool allOk)
{
	if (!ctx_.events)
		return;
	std::string end = isoTimeNow();
	const engine::SnapshotOutcome &first = outcomes.front();
	if (a_.request.oneDisk) {
		events::SnapshotNotice n;
		n.event = "createSnapshot";
		n.result = first.state == SnapshotState::Completed ? "succeeded" : "failed";
		n.cause = first.stateMessage;
		n.snapshotId = first.manifest.snapshotId;
		n.source = first.manifest.volumeId;
		n.startTime = first.manifest.startTime;
		n.endTime = end;
		ctx_.events->emit(events::toJson(n));
		return;
	}
	events::MultiVolumeNotice n;
	n.result = allOk ? "succeeded" : "failed";
	n.cause = allOk ? "" : first.stateMessage;
	n.requestId = first.manifest.snapshotSetId;
	n.startTime = first.manifest.startTime;
	n.endTime = end;
	for (const engine::SnapshotOutcome &o : outcomes)
		n.snapshots.push_back({o.manifest.snapshotId, o.manifest.volumeId, name(o.state)});
	ctx_.events->emit(events::toJson(n));
}

void CreateJob::emitFailure(const std::string &why)
{
	if (!ctx_.events)
		return;
	std::string now = isoTimeNow();
	auto rowOf = [&](const std::string &id) {
		auto row = ctx_.catalog->getSnapshot(id);
		return row && *row ? std::optional(**row) : std::nullopt;
	};
	if (a_.request.oneDisk) {
		auto row = rowOf(ids_.front());
		events::SnapshotNotice n;
		n.event = "createSnapshot";
		n.result = "failed";
		n.cause = why;
		n.snapshotId = ids_.front();
		n.source = row ? row->volumeId : "";
		n.startTime = row ? row->startTime : now;
		n.endTime = now;
		ctx_.events->emit(events::toJson(n));
		return;
	}
	events::MultiVolumeNotice n;
	n.result = "failed";
	n.cause = why;
	n.requestId = a_.request.set.snapshotSetId;
	n.startTime = n.endTime = now;
	for (const std::string &id : ids_) {
		auto row = rowOf(id);
		n.snapshots.push_back({id, row ? row->volumeId : "", "error"});
	}
	ctx_.events->emit(events::toJson(n));
}

void CreateJob::releaseClaims()
{
	if (a_.claimed)
		ctx_.admission->release(a_.claims);
	a_.claimed = false;
}

Reply CreateJob::reply()
{
	std::vector<catalog::SnapshotRow> rows;
	for (const std::string &id : ids_)
		if (auto row = ctx_.catalog->getSnapshot(id); row && *row)
			rows.push_back(**row);
	return createdReply(rows, a_.request.oneDisk);
}

} // namespace virtsnap::daemon
