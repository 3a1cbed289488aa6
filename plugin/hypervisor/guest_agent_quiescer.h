// Freezes the guest's filesystems through qemu-guest-agent for the instant
// of the transaction (DESIGN.md, step 2-4), and thaws them on every path.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "capture.h"
#include "qmp/guest_agent_client.h"

namespace virtsnap::hypervisor {

class GuestAgentQuiescer : public Quiescer
{
public:
	GuestAgentQuiescer(std::string socketPath, QuiesceMode mode, std::chrono::milliseconds timeout);
	~GuestAgentQuiescer() override;

	// With Try, a failure to freeze is not an error: the snapshot goes on
	// crash-consistent and fallbackReason() says why. With Required it is,
	// and the message names the agent.
	Result<void> freeze() override;
	void thaw() override;

	bool frozen() const override { return frozen_; }
	int64_t freezeMillis() const override { return freezeMillis_; }
	const std::string &fallbackReason() const override { return fallbackReason_; }

private:
	std::string socketPath_;
	QuiesceMode mode_;
	std::chrono::milliseconds timeout_;
	std::unique_ptr<qmp::GuestAgentClient> agent_;
	std::chrono::steady_clock::time_point freezeStart_;
	bool freezeSent_ = false;
	bool frozen_ = false;
	bool freezeUnanswered_ = false;
	int64_t freezeMillis_ = -1;
	std::string fallbackReason_;
};

} // namespace virtsnap::hypervisor
