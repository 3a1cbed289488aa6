// The freeze through libvirt's own agent channel: libvirt owns the guest
// agent of a domain it runs, so virtsnap does not reach it directly.
#include <algorithm>

#include "libvirt_internal.h"

namespace virtsnap::hypervisor {

namespace {

// libvirt's agent timeout is a property of the domain; it is set for the
// freeze and put back to libvirt's default afterwards.
class FreezeThroughLibvirt : public Quiescer
{
public:
	FreezeThroughLibvirt(std::shared_ptr<LibvirtDomain> domain, QuiesceMode mode, std::chrono::milliseconds timeout)
		: domain_(std::move(domain)), mode_(mode), timeout_(timeout)
	{
	}
	~FreezeThroughLibvirt() override { thaw(); }

	Result<void> freeze() override
	{
		if (mode_ == QuiesceMode::Off)
			return {};
		virDomainPtr dom = domain_->dom();
		int seconds = int(std::max<int64_t>(1, (timeout_.count() + 999) / 1000));
		virDomainAgentSetResponseTimeout(dom, seconds, 0);
		start_ = std::chrono::steady_clock::now();
		if (virDomainFSFreeze(dom, nullptr, 0, 0) < 0) {
			fallbackReason_ = "libvirt's guest agent of " + domain_->describe() + ": " + lastLibvirtError();
			attempted_ = true;
			virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
			if (mode_ == QuiesceMode::Required)
				return fail(errc::kIncorrectState, "cannot freeze the guest's filesystems "
								   "(--quiesce required): " + fallbackReason_);
			return {};
		}
		frozen_ = attempted_ = true;
		return {};
	}

	void thaw() override
	{
		if (!attempted_)
			return;
		attempted_ = false;
		virDomainPtr dom = domain_->dom();
		// After a failed freeze too: an agent that timed out may still
		// run the freeze when it wakes.
		int thawed = virDomainFSThaw(dom, nullptr, 0, 0);
		if (frozen_ && thawed >= 0)
			freezeMillis_ = std::chrono::duration_cast<std::chrono::milliseconds>(
						std::chrono::steady_clock::now() - start_)
						.count();
		virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
	}

	bool frozen() const override { return frozen_; }
	int64_t freezeMillis() const override { return freezeMillis_; }
	const std::string &fallbackReason() const override { return fallbackReason_; }

private:
	std::shared_ptr<LibvirtDomain> domain_;
	QuiesceMode mode_;
	std::chrono::milliseconds timeout_;
	std::chrono::steady_clock::time_point start_;
	bool attempted_ = false;
	bool frozen_ = false;
	int64_t freezeMillis_ = -1;
	std::string fallbackReason_;
};

} // namespace

std::unique_ptr<Quiescer> freezeThroughLibvirt(std::shared_ptr<LibvirtDomain> domain, QuiesceMode mode,
					       std::chrono::milliseconds timeout)
{
	return std::make_unique<FreezeThroughLibvirt>(std::move(domain), mode, timeout);
}

} // namespace virtsnap::hypervisor
