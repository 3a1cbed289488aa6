// virtsnapd's lifecycle-policy timer: every pass runs each schedule of each
// enabled policy whose NextRun has come. NextRun counts from the later of
// the schedule's last run and the time the policy was created or enabled
// (get-lifecycle-policy shows the same), so a daemon that was down across
// several slots finds each schedule due once, on its first pass, and runs
// it once: the run becomes the last, and the next slot is after it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "lifecycle_schedule.h"
#include "service.h"

namespace virtsnap::daemon {

// One pass at `now`: runs what is due through the Service's dispatch table
// (get-lifecycle-policies, get-lifecycle-policy, run-lifecycle-policy), as
// a client would. Returns how many schedules it ran; a run that failed is
// recorded by the run itself.
int runDueSchedules(Service &service, UtcTime now);

class PolicyTimer
{
public:
	// A first pass at once, then one every `interval`.
	PolicyTimer(Service &service, std::chrono::seconds interval);
	// Stops after the pass under way, if any.
	~PolicyTimer();

private:
	void loop();

	Service &service_;
	std::chrono::seconds interval_;
	std::mutex mutex_;
	std::condition_variable wake_;
	bool stopping_ = false;
	std::thread thread_;
};

} // namespace virtsnap::daemon
