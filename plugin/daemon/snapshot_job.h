// One create request from admission to its end. The rows and the job record
// exist before any data moves, so a crash from then on is found again at
// restart (recovery.h). The point in time is taken now, or, queued behind a
// capture of the same disk (domain), on a job thread once that one ends.
// The transfer holds a slot of --max-parallel-jobs; at its end the rows get
// their final state, a delete asked meanwhile takes effect, and the events
// go out.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "context.h"
#include "job_runner.h"
#include "requests.h"

namespace virtsnap::daemon {

// A request that passed admission.
struct AdmittedCreate {
	CreateRequest request;
	hypervisor::InstanceInfo instance;
	std::vector<hypervisor::DiskInfo> disks;
	std::vector<std::string> volumes; // counted against their pending limits
	std::vector<std::string> claims;  // the captures it takes (volumes, maybe the instance)
	bool claimed = false;             // the claims are held (else: queue)
};

// A create request already parsed (or built: a lifecycle policy's run,
// whose aws:dlm: tags no user may give): admission, then the job, as
// create-snapshot(s) run it.
Result<Reply> startCreate(Context &ctx, CreateRequest request, const engine::ProgressFn &progress);

class CreateJob : public std::enable_shared_from_this<CreateJob>
{
public:
	// Takes the point in time now (the claims are held, or this runs
	// in-process), then moves the data on a job thread (daemon) or here.
	static Result<Reply> startNow(Context &ctx, AdmittedCreate admitted, const engine::ProgressFn &progress);
	// Gives out ids and pending rows now; the point in time is taken on a
	// job thread once the claims can be had.
	static Result<Reply> queue(Context &ctx, AdmittedCreate admitted);

	CreateJob(Context &ctx, AdmittedCreate admitted) : ctx_(ctx), a_(std::move(admitted)) {}

private:
	// Rows for the job's snapshots, its volumes and its job record, in one
	// transaction; the client token's record too, for a new job.
	Result<void> record(engine::SnapshotJob &job, bool newJob);
	// Has the capture write the job row, naming what it will make, before
	// it changes the instance.
	void recordCaptureIntent();
	// Marks that row failed when the capture itself failed.
	void endCaptureIntent();
	// Runs the transfer and writes the outcome.
	void finish(engine::SnapshotJob &job, const engine::ProgressFn &progress);
	// Writes the tags create-tags gave the pending row into its committed
	// manifest.
	void adoptPendingTags(store::Manifest &manifest, const store::Tags &tags);
	// On a job thread: waits for the claims, then takes the point in time.
	void runQueued();
	// A queued job that never took its point in time.
	void failQueued(const std::string &why);
	void emitOutcome(const std::vector<engine::SnapshotOutcome> &outcomes, bool allOk);
	void emitFailure(const std::string &why);
	void releaseClaims();
	Reply reply();

	Context &ctx_;
	AdmittedCreate a_;
	std::string jobId_;
	std::vector<std::string> ids_;
	JobRunner::CancelFlag cancel_;
	// The job row the capture wrote before changing the instance, if any.
	std::string intentJobId_;
};

} // namespace virtsnap::daemon
