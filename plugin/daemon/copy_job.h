// One copy-snapshot from admission to its end. The pending row, the job
// record and the client token's record are written before any data moves,
// so a crash from then on is found again at restart (recovery.h). The
// copy runs on a job thread (virtsnapd) or here (in process), holding a
// transfer slot of --max-parallel-jobs and a claim that keeps gc out
// (Admission::beginGc); at its end the row gets its final state, a delete
// asked meanwhile takes effect, and a copySnapshot event goes out.
#pragma once

#include <memory>
#include <string>

#include "context.h"
#include "engine/snapshot_copy.h"
#include "job_runner.h"
#include "requests.h"

namespace virtsnap::daemon {

// A copy request already parsed (or built: a lifecycle policy's copy
// rule): the source found and checked, then admission and the job, as
// copy-snapshot runs it, as `call`'s account. The copy goes into ctx.store.
Result<Reply> startCopy(Context &ctx, CopySnapshotRequest request, const Call &call);

// A copy request whose source was found, before it is admitted.
struct AdmittedCopy {
	CopySnapshotRequest request;
	engine::CopyRequest copy;                    // with the copy's id once recorded
	std::unique_ptr<store::Store> otherSource;   // the source store, when it is not ctx.store
	store::Manifest sourceManifest;
	std::vector<std::string> volumes;            // counted against their pending limits
};

class CopyJob : public std::enable_shared_from_this<CopyJob>
{
public:
	// Admits the copy against the pending limits, records it pending, and
	// runs it on a job thread (daemon) or here.
	static Result<Reply> start(Context &ctx, AdmittedCopy admitted, const engine::ProgressFn &progress);

	CopyJob(Context &ctx, AdmittedCopy admitted) : ctx_(ctx), a_(std::move(admitted)) {}

private:
	store::Store &source() { return a_.otherSource ? *a_.otherSource : *ctx_.store; }
	// The pending row, the job row and the token's, in one transaction.
	Result<void> record();
	void run(const engine::ProgressFn &progress);
	// Writes the outcome: the completed manifest's row, or the error.
	void finish(const Result<store::Manifest> &made);
	void emit(bool succeeded, const std::string &cause);
	Reply reply();

	Context &ctx_;
	AdmittedCopy a_;
	std::string jobId_;
	JobRunner::CancelFlag cancel_;
};

} // namespace virtsnap::daemon
