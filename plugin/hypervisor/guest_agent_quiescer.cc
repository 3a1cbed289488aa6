#include "guest_agent_quiescer.h"

namespace virtsnap::hypervisor {

using Clock = std::chrono::steady_clock;

GuestAgentQuiescer::GuestAgentQuiescer(std::string socketPath, QuiesceMode mode, std::chrono::milliseconds timeout)
	: socketPath_(std::move(socketPath)), mode_(mode), timeout_(timeout)
{
}

GuestAgentQuiescer::~GuestAgentQuiescer()
{
	// Whatever happened in between, never leave a guest frozen.
	thaw();
}

Result<void> GuestAgentQuiescer::freeze()
{
	if (mode_ == QuiesceMode::Off)
		return {};
	auto failed = [&](const std::string &why) -> Result<void> {
		fallbackReason_ = "guest agent at " + socketPath_ + ": " + why;
		if (mode_ == QuiesceMode::Required)
			return fail(errc::kIncorrectState, "cannot freeze the guest's filesystems (--quiesce required): " +
								   fallbackReason_);
		return {};
	};

	auto agent = qmp::GuestAgentClient::connect(socketPath_, timeout_);
	if (!agent)
		return failed(agent.error().desc);
	agent_ = std::move(*agent);

	// A freeze left over from a crashed run would make ours fail, and the
	// guest would stay frozen: find out first.
	if (auto status = agent_->execute("guest-fsfreeze-status", virtsnap::Json(), timeout_);
	    status && status->asString() == "frozen")
		(void)agent_->execute("guest-fsfreeze-thaw", virtsnap::Json(), timeout_); // the freeze below says if it failed

	freezeStart_ = Clock::now();
	freezeSent_ = true;
	auto frozen = agent_->execute("guest-fsfreeze-freeze", virtsnap::Json(), timeout_);
	if (!frozen) {
		freezeUnanswered_ = frozen.error().errorClass == qmp::kTimeout;
		return failed(frozen.error().desc);
	}
	frozen_ = true;
	return {};
}

void GuestAgentQuiescer::thaw()
{
	if (!freezeSent_ || !agent_)
		return;
	freezeSent_ = false;
	if (freezeUnanswered_) {
		// A hung agent may still run the freeze when it wakes up: queue
		// the thaw right behind it, without waiting for either. If even
		// that cannot be sent, the channel is gone and nothing can thaw.
		(void)agent_->post("guest-fsfreeze-thaw");
		return;
	}
	auto thawed = agent_->execute("guest-fsfreeze-thaw", virtsnap::Json(), timeout_);
	if (frozen_)
		freezeMillis_ =
			std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - freezeStart_).count();
	if (!thawed)
		(void)agent_->post("guest-fsfreeze-thaw"); // as above: the last thing to try
}

} // namespace virtsnap::hypervisor
