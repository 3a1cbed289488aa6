// libvirt calls that wait on QEMU's monitor, bounded in time. libvirt waits
// for a monitor reply forever, so a stopped or hung QEMU would hang every
// caller; the call runs on a thread of its own instead, which the caller
// stops waiting for.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "libvirt_internal.h"

namespace virtsnap::hypervisor {

namespace {

// What the call's thread and its caller share; the last of the two to let
// go frees it.
struct CallState {
	std::mutex mutex;
	std::condition_variable done;
	bool finished = false;
	bool abandoned = false;
	int rc = -1;
	std::string text;
	std::string error;
};

// The call's thread, with references of its own to the connection and the
// domain: the driver may be gone by the time a late call returns.
void runCall(std::shared_ptr<CallState> state, DomainRef ref, LibvirtDomain::MonitorCall call,
	     LibvirtDomain::LateUndo undo)
{
	virDomainPtr dom = ref.get();
	std::string text;
	int rc = call(dom, &text);
	std::string error = rc < 0 ? lastLibvirtError() : "";
	bool late = false;
	{
		std::lock_guard lock(state->mutex);
		late = state->abandoned;
		state->finished = true;
		state->rc = rc;
		state->text = std::move(text);
		state->error = std::move(error);
	}
	state->done.notify_one();
	if (late && rc >= 0 && undo)
		undo(dom);
}

} // namespace

Result<std::string> LibvirtDomain::monitorCall(const std::string &what, MonitorCall call, LateUndo undoIfLate)
{
	auto state = std::make_shared<CallState>();
	std::thread(runCall, state, DomainRef(dom_), std::move(call), std::move(undoIfLate)).detach();
	std::unique_lock lock(state->mutex);
	if (!state->done.wait_for(lock, monitorTimeout_, [&] { return state->finished; })) {
		state->abandoned = true;
		return fail(errc::kHypervisor,
			    "QEMU of " + describe() + " did not answer " + what + " within " +
				    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(monitorTimeout_).count()) +
				    " s (is it stopped or hung?)");
	}
	if (state->rc < 0)
		return fail(errc::kHypervisor, what + " of " + describe() + ": " + state->error);
	return std::move(state->text);
}

} // namespace virtsnap::hypervisor
