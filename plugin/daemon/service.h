// The front of every command: opens the store and its catalog, owns the
// daemon's state (admission, jobs, drivers), and hands each command to its
// handler through the one dispatch table (commands.h). virtsnapd serves it
// on its socket; the CLI runs it in-process when no daemon answers. Creates
// answer "pending" once the point in time is fixed; in the daemon the data
// then moves on a job thread, in-process it moves before the answer.
#pragma once

#include <memory>

#include "admission.h"
#include "catalog_sync.h"
#include "context.h"
#include "driver_cache.h"
#include "job_runner.h"

namespace virtsnap::daemon {

class Service
{
public:
	// Opens the store and its catalog (rebuilt from the manifests when
	// empty). `events` may be null: nothing is emitted.
	static Result<std::unique_ptr<Service>> open(const StoreLocation &location, ServiceOptions options,
						     events::Dispatcher *events);
	// For commands that need no store (init): the store is opened only
	// when a command needs one.
	static std::unique_ptr<Service> unopened(const StoreLocation &location, ServiceOptions options);
	// Interrupts running jobs (they end in error) and waits for them.
	~Service();

	// `uid`: the caller's; the account it acts as is resolved here
	// (access.h), with --account when given.
	Result<Reply> run(const Arguments &args, const std::string &uid,
			  const engine::ProgressFn &progress = nullptr);

	// Jobs a killed process (daemon or CLI) left "running" end in error,
	// and what their captures left in QEMU is removed. The daemon runs it
	// at start, the CLI before an in-process snapshot.
	void recoverInterruptedJobs();
	size_t runningJobs() const { return jobs_.running(); }

private:
	Service(const StoreLocation &location, ServiceOptions options, events::Dispatcher *events);
	Result<void> openStore();

	// Owned here; ctx_ borrows them. The job runner comes last, so it is
	// destroyed first: its threads use everything above it.
	std::unique_ptr<store::Store> store_;
	std::unique_ptr<catalog::Catalog> catalog_;
	Admission admission_;
	CatalogSync sync_;
	DriverCache drivers_;
	JobRunner jobs_;
	Context ctx_;
};

} // namespace virtsnap::daemon
