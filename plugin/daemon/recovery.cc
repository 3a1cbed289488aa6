#include "recovery.h"

#include <unistd.h>

#include <fstream>

#include "catalog/catalog.h"
#include "core/ids.h"
#include "hypervisor/target.h"

namespace virtsnap::daemon {

namespace {

// A job whose process still runs (this one, another CLI, a daemon) is not
// interrupted; the process name guards against a reused pid.
bool alive(int64_t pid)
{
	if (pid <= 0)
		return false;
	if (pid == ::getpid())
		return true;
	std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
	std::string name;
	std::getline(comm, name);
	return name == "virtsnap" || name == "virtsnapd";
}

} // namespace

void recoverInterruptedJobs(Context &ctx)
{
	auto jobs = ctx.catalog->jobsInState(JobState::Running);
	if (!jobs)
		return;
	for (catalog::JobRow &job : *jobs) {
		// An instant restore's copy runs in its hypervisor and its export
		// in nbdkit, both without us: resumeInstantRestores (instant_job.h)
		// watches it again.
		if (alive(job.pid) || job.kind == "instant-restore")
			continue;
		std::string note = "interrupted: virtsnapd stopped during the transfer";
		// A copy touched no instance: only its row is left to end.
		if (job.kind != "copy-snapshot") {
			auto driver = hypervisor::connectDriver(hypervisor::Target::parse(job.target), {},
								ctx.options.hypervisorTimeout);
			if (driver)
				(*driver)->removeLeftovers(job.details);
			else
				note += " (and its instance is gone: " + driver.error().message + ")";
		}
		// Recovery does what it can; what it cannot write now, the next
		// start finds again (the job stays running).
		for (const std::string &id : job.snapshotIds) {
			auto row = ctx.catalog->getSnapshot(id);
			if (row && *row && (*row)->state == SnapshotState::Pending) {
				(*row)->state = SnapshotState::Error;
				(*row)->stateMessage = note;
				(void)ctx.catalog->putSnapshot(**row);
			}
		}
		job.state = JobState::Interrupted;
		job.updated = isoTimeNow();
		(void)ctx.catalog->putJob(job);
	}
}

} // namespace virtsnap::daemon
