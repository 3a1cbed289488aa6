#include "copy_job.h"

#include <unistd.h>

#include <cstdio>
#include <functional>
#include <optional>

#include "admission.h"
#include "catalog_rows.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "ec2_output.h"
#include "engine/block_writes.h"
#include "engine/maintenance.h"
#include "engine/resources.h"
#include "events/dispatcher.h"
#include "events/event.h"
#include "handlers.h"
#include "progress_recorder.h"

namespace virtsnap::daemon {

namespace {

constexpr const char *kCopyKind = "copy-snapshot";
// EBS lets 20 copies into one destination region be in flight at once.
// Ours are pending snapshots of the copies' volume (kDirectVolumeId),
// counted as creates are, with this limit; pending start-snapshots of
// that volume count too.
constexpr int kMaxPendingCopies = 20;

Admission::Limits copyLimits(Context &ctx)
{
	Admission::Limits limits = pendingLimits(ctx);
	limits.limit = [](const std::string &, std::string *volumeClass) {
		*volumeClass = "copies";
		return kMaxPendingCopies;
	};
	return limits;
}

catalog::SnapshotRow pendingRow(const AdmittedCopy &a)
{
	catalog::SnapshotRow r;
	r.snapshotId = a.copy.snapshotId;
	r.volumeId = engine::kDirectVolumeId;
	r.state = SnapshotState::Pending;
	r.startTime = a.copy.startTime;
	r.description = a.copy.description;
	r.ownerId = a.copy.accountId;
	r.encrypted = !a.copy.kmsKeyId.empty();
	r.kmsKeyId = a.copy.kmsKeyId;
	r.consistencyLevel = a.sourceManifest.consistency;
	r.volumeSize = a.sourceManifest.volumeSize;
	r.captureMode = "full";
	r.sourceSnapshotId = a.copy.sourceSnapshotId;
	r.sourceStore = a.copy.sourceStoreUrl;
	r.tags = a.copy.tags;
	return r;
}

} // namespace

Result<Reply> CopyJob::start(Context &ctx, AdmittedCopy admitted, const engine::ProgressFn &progress)
{
	auto self = std::make_shared<CopyJob>(ctx, std::move(admitted));
	AdmittedCopy &a = self->a_;
	VS_TRY(ctx.admission->admit(a.volumes, copyLimits(ctx)));
	auto minted = newResourceId("snap-");
	if (!minted) {
		ctx.admission->withdraw(a.volumes);
		return std::unexpected(minted.error());
	}
	a.copy.snapshotId = *minted;
	a.copy.startTime = isoTimeNow();
	self->jobId_ = relatedId("job-", a.copy.snapshotId);
	VS_TRY(ctx.admission->settle(a.volumes, [&] { return self->record(); }));
	self->cancel_ = ctx.jobs->enroll(self->jobId_);
	if (ctx.options.background)
		ctx.jobs->start([self] { self->run(nullptr); },
				[self] {
					self->cancel_->store(true); // no thread: it ends at once, in error
					self->run(nullptr);
				});
	else
		self->run(progress);
	return self->reply();
}

Result<void> CopyJob::record()
{
	return ctx_.catalog->transaction([&]() -> Result<void> {
		VS_TRY(ctx_.catalog->putSnapshot(pendingRow(a_)));
		catalog::JobRow job;
		job.jobId = jobId_;
		job.kind = kCopyKind;
		job.state = JobState::Running;
		job.details = "{}";
		job.pid = ::getpid();
		job.snapshotIds = {a_.copy.snapshotId};
		VS_TRY(ctx_.catalog->putJob(job));
		const CopySnapshotRequest &req = a_.request;
		if (!req.clientToken.empty()) {
			Json ids = Json::array();
			ids.append(Json::string(a_.copy.snapshotId));
			VS_TRY(ctx_.catalog->putRequest({req.clientToken, req.requestHash, ids.dump(), a_.copy.startTime}));
		}
		return {};
	});
}

void CopyJob::run(const engine::ProgressFn &progress)
{
	// A claim of its own: gc (Admission::beginGc) waits for it, and the
	// copy waits for a gc already running, as captures do.
	std::vector<std::string> claims = {"copy:" + a_.copy.snapshotId};
	bool claimed = ctx_.admission->waitClaim(claims, [&] { return cancel_->load() || cancelRequested(); });
	Result<store::Manifest> made = fail(errc::kIncorrectState, "interrupted before the copy began");
	if (claimed) {
		std::optional<JobRunner::Slot> slot;
		if (ctx_.options.background)
			slot.emplace(*ctx_.jobs, cancel_);
		ProgressRecorder recorder(*ctx_.catalog, {a_.copy.snapshotId}, progress);
		made = engine::copySnapshot(source(), *ctx_.store, a_.copy, std::ref(recorder),
					    [this] { return cancel_->load(); });
		ctx_.admission->release(claims);
	}
	finish(made);
	ctx_.jobs->retire(jobId_);
}

void CopyJob::finish(const Result<store::Manifest> &made)
{
	const std::string &id = a_.copy.snapshotId;
	std::string cause = made ? "" : made.error().toString();
	// The catalog is an index of the store: a row it fails to write is
	// found again by the next rebuild, and the job must end anyway.
	(void)ctx_.catalog->transaction([&]() -> Result<void> {
		VS_ASSIGN(auto before, ctx_.catalog->getSnapshot(id));
		if (before && before->deleteRequested) {
			// A delete of a pending snapshot takes effect now, as on EBS.
			if (made)
				(void)engine::deleteSnapshot(*ctx_.store, id); // gone either way
			return ctx_.catalog->removeSnapshot(id);
		}
		if (!made) {
			catalog::SnapshotRow row = before ? *before : pendingRow(a_);
			row.state = SnapshotState::Error;
			row.stateMessage = cause;
			return ctx_.catalog->putSnapshot(row);
		}
		store::Manifest m = *made;
		// Tags create-tags gave the pending row go into the manifest.
		if (before && before->tags != m.tags) {
			if (auto written = engine::replaceTags(*ctx_.store, id, before->tags); written)
				m.tags = before->tags;
			else
				std::fprintf(stderr, "virtsnapd: %s: tags given while pending are lost: %s\n", id.c_str(),
					     written.error().toString().c_str());
		}
		return ctx_.catalog->putSnapshot(snapshotRow(m, SnapshotState::Completed, ""));
	});
	if (auto job = ctx_.catalog->getJob(jobId_); job && *job) {
		(*job)->state = made ? JobState::Done : JobState::Failed;
		(*job)->updated = isoTimeNow();
		(void)ctx_.catalog->putJob(**job); // as above
	}
	emit(bool(made), cause);
}

void CopyJob::emit(bool succeeded, const std::string &cause)
{
	if (!ctx_.events)
		return;
	events::SnapshotNotice n;
	n.event = "copySnapshot";
	n.result = succeeded ? "succeeded" : "failed";
	n.cause = cause;
	n.snapshotId = a_.copy.snapshotId;
	n.source = a_.copy.sourceSnapshotId;
	n.startTime = a_.copy.startTime;
	n.endTime = isoTimeNow();
	ctx_.events->emit(events::toJson(n));
}

Reply CopyJob::reply()
{
	// EC2's CopySnapshot answers the new id alone (describe-snapshots,
	// or the CLI's --wait, shows the rest); in process the copy is done
	// by now, and its row is the answer --wait gives.
	Reply reply;
	reply.doc = Json::object();
	reply.doc.set("SnapshotId", Json::string(a_.copy.snapshotId));
	auto row = ctx_.catalog->getSnapshot(a_.copy.snapshotId);
	if (!ctx_.options.background && row && *row)
		reply.doc = snapshotJson(**row);
	if (row && *row && (*row)->state == SnapshotState::Error)
		reply.failure = Error{errc::kIncorrectState,
				      "snapshot " + a_.copy.snapshotId + " failed: " + (*row)->stateMessage};
	return reply;
}

} // namespace virtsnap::daemon
