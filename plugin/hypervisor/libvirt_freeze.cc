// The freeze through libvirt's own agent channel: libvirt owns the guest
// agent of a domain it runs, so virtsnap does not reach it directly.
#include <algorithm>
#include <thread>

#include "libvirt_internal.h"

namespace virtsnap::hypervisor {

namespace {

// How long a thaw is retried for an agent that did not answer, and how
// long each try waits for it.
constexpr std::chrono::minutes kLateThawFor{10};
constexpr int kLateThawTrySeconds = 5;

// libvirt sends every agent command behind a guest-sync: a thaw sent while
// the agent still works on a freeze that timed out (a slow FIFREEZE) never
// reaches it, and that freeze, once done, would hold the guest frozen.
// Retried on a thread of its own, with its own references to the domain,
// the thaw lands after that freeze once the agent answers again.
void thawWhenTheAgentAnswers(virDomainPtr domain)
{
	std::thread([ref = DomainRef(domain)] {
		virDomainPtr dom = ref.get();
		for (auto until = std::chrono::steady_clock::now() + kLateThawFor;
		     std::chrono::steady_clock::now() < until && virDomainIsActive(dom) == 1;) {
			virDomainAgentSetResponseTimeout(dom, kLateThawTrySeconds, 0);
			int thawed = virDomainFSThaw(dom, nullptr, 0, 0);
			virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
			if (thawed >= 0)
				break;
			std::this_thread::sleep_for(std::chrono::seconds(1));
		}
	}).detach();
}

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
		if (thawed < 0)
			thawWhenTheAgentAnswers(dom);
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
