// The Driver interface of a libvirt domain: each call handed on to the part
// that does it (libvirt_internal.h), with the domain's lock taken where
// libvirt's checkpoints or backup job may change.
#include "libvirt_driver.h"

#include <libvirt/virterror.h>

#include "libvirt_internal.h"

namespace virtsnap::hypervisor {

namespace {

// libvirt prints every error to stderr unless told otherwise; ours carry
// the message instead.
void quiet(void *, virErrorPtr) {}

} // namespace

LibvirtDriver::LibvirtDriver(std::unique_ptr<LibvirtDomain> domain) : domain_(std::move(domain)) {}

LibvirtDriver::~LibvirtDriver() = default;

Result<std::shared_ptr<LibvirtDriver>> LibvirtDriver::connect(const std::string &uri, const std::string &domain,
							      std::chrono::milliseconds monitorTimeout)
{
	virSetErrorFunc(nullptr, quiet);
	virConnectPtr conn = virConnectOpen(uri.c_str());
	if (!conn)
		return fail(errc::kHypervisor, "cannot connect to libvirt at " + uri + ": " + lastLibvirtError());
	virDomainPtr dom = virDomainLookupByUUIDString(conn, domain.c_str());
	if (!dom)
		dom = virDomainLookupByName(conn, domain.c_str());
	if (!dom) {
		virConnectClose(conn);
		return fail(errc::kInstanceNotFound, "no libvirt domain '" + domain + "' at " + uri);
	}
	std::shared_ptr<LibvirtDriver> d(new LibvirtDriver(std::make_unique<LibvirtDomain>(conn, dom, monitorTimeout)));
	d->self_ = d;
	return d;
}

std::shared_ptr<LibvirtDomain> LibvirtDriver::sharedDomain()
{
	// Aliasing: it points at the domain and owns a share of the driver.
	return std::shared_ptr<LibvirtDomain>(self_.lock(), domain_.get());
}

std::string LibvirtDriver::describe() const
{
	return domain_->describe();
}

Result<DomainDescription> LibvirtDriver::description()
{
	return domain_->description();
}

Result<std::string> LibvirtDriver::state()
{
	return domain_->state();
}

Result<InstanceInfo> LibvirtDriver::instance()
{
	VS_ASSIGN(const DomainDescription desc, description());
	VS_ASSIGN(const std::string st, state());
	InstanceInfo info;
	info.name = desc.name;
	info.uuid = desc.uuid;
	// The UUID, not the name: volumes survive renaming the domain.
	info.key = "uuid:" + desc.uuid;
	info.status = st;
	info.hibernated = virDomainHasManagedSaveImage(domain_->dom(), 0) > 0;
	info.hibernationEnabled = desc.suspendToDiskEnabled;
	info.productCodes = desc.productCodes;
	return info;
}

Result<std::vector<DiskInfo>> LibvirtDriver::disks()
{
	std::lock_guard lock(domain_->mutex());
	return domain_->disksLocked();
}

Result<std::vector<DiskInfo>> LibvirtDriver::configuredDisks()
{
	std::lock_guard lock(domain_->mutex());
	return domain_->configuredDisks();
}

Result<std::vector<std::string>> LibvirtDriver::reconcile(const std::vector<std::string> &needed)
{
	std::lock_guard lock(domain_->mutex());
	return domain_->reconcileLocked(needed);
}

std::unique_ptr<Quiescer> LibvirtDriver::quiescer(QuiesceMode mode, std::chrono::milliseconds timeout,
						  const std::string &qgaSocket)
{
	(void)qgaSocket; // libvirt owns the agent channel
	auto st = state();
	if (st && *st == "shut off")
		mode = QuiesceMode::Off; // no guest to freeze
	return freezeThroughLibvirt(sharedDomain(), mode, timeout);
}

Result<std::unique_ptr<Capture>> LibvirtDriver::capture(const CaptureSpec &spec)
{
	if (spec.disks.empty())
		return fail(errc::kInvalidParameterValue, "no disk to capture");
	VS_ASSIGN(const std::string st, state());
	if (st == "shut off")
		return captureOffline(*domain_, spec);
	if (st != "running" && st != "paused" && st != "blocked")
		return fail(errc::kIncorrectState,
			    describe() + " is " + st + "; snapshots need it running, paused or shut off");
	return captureRunning(sharedDomain(), spec);
}

void LibvirtDriver::removeLeftovers(const std::string &cleanupRecord)
{
	// An offline capture leaves nothing a record would name.
	removeBackupLeftovers(*domain_, cleanupRecord);
}

void LibvirtDriver::imagesReplaced()
{
	std::lock_guard lock(domain_->mutex());
	domain_->forgetCheckpointsLocked();
}

} // namespace virtsnap::hypervisor

namespace virtsnap::hypervisor {

Result<std::optional<std::string>> LibvirtDriver::diskPassphrase(const DiskInfo &disk)
{
	if (disk.encryptionSecret.empty())
		return std::optional<std::string>();
	std::lock_guard lock(domain_->mutex());
	return domain_->secretValue(disk.encryptionSecret);
}

} // namespace virtsnap::hypervisor
