// A libvirt domain's part of instant restore: libvirt's block pull (QEMU's
// block-stream under libvirt, which owns the monitor) of a disk whose
// backing is a served snapshot. libvirt forgets a pull once it ended, so
// the end is read from the disk: without a backing it is done.
#include "libvirt_driver.h"

#include "libvirt_internal.h"
#include "qemu_driver.h"

namespace virtsnap::hypervisor {

namespace {

// Whether the running domain's disk `alias` (QEMU's qdev id) still reads
// from a backing image: read-only QMP through libvirt.
Result<bool> pulledDiskHasBacking(LibvirtDomain &domain, const std::string &alias)
{
	VS_ASSIGN(Json blocks, domain.queryBlock());
	for (size_t i = 0; i < blocks.size(); i++)
		if (qdevId(blocks.at(i).getString("qdev").value_or("")) == alias)
			return blocks.at(i).get("inserted").has("backing_file");
	return fail(errc::kDiskNotFound, domain.describe() + " has no device " + alias);
}

Result<std::string> aliasOf(LibvirtDriver &driver, const std::string &disk)
{
	VS_ASSIGN(DomainDescription desc, driver.description());
	for (const DomainDisk &d : desc.disks)
		if (d.target == disk)
			return d.alias;
	return fail(errc::kDiskNotFound, "no disk '" + disk + "' in " + driver.describe());
}

} // namespace

Result<void> LibvirtDriver::startPull(const std::string &disk, uint64_t bytesPerSecond)
{
	VS_ASSIGN(std::string st, state());
	if (st != "running" && st != "paused")
		return fail(errc::kIncorrectState, describe() + " is " + st + "; a pull needs it running");
	VS_TRY(aliasOf(*this, disk));
	VS_ASSIGN(auto text, domain_->monitorCall("block pull of " + disk, [&](virDomainPtr dom, std::string *) {
		virDomainBlockJobInfo info{};
		if (virDomainGetBlockJobInfo(dom, disk.c_str(), &info, 0) == 1)
			return 0; // running already
		return virDomainBlockPull(dom, disk.c_str(), bytesPerSecond, VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES);
	}));
	(void)text;
	return {};
}

Result<PullStatus> LibvirtDriver::pullStatus(const std::string &disk)
{
	VS_ASSIGN(std::string alias, aliasOf(*this, disk));
	virDomainBlockJobInfo info{};
	int found = 0;
	VS_ASSIGN(auto text, domain_->monitorCall("block job of " + disk, [&](virDomainPtr dom, std::string *) {
		found = virDomainGetBlockJobInfo(dom, disk.c_str(), &info, 0);
		return found < 0 ? -1 : 0;
	}));
	(void)text;
	PullStatus s;
	s.done = info.cur;
	s.total = info.end;
	if (found == 1)
		return s;
	VS_ASSIGN(bool backed, pulledDiskHasBacking(*domain_, alias));
	s.state = backed ? PullStatus::State::Failed : PullStatus::State::Done;
	if (backed)
		s.error = "the block pull of " + disk + " ended and it still has its backing (see libvirt's log)";
	return s;
}

Result<void> LibvirtDriver::startInstance()
{
	VS_ASSIGN(auto text, domain_->monitorCall("start " + describe(), [](virDomainPtr dom, std::string *) {
		return virDomainCreate(dom);
	}));
	(void)text;
	return {};
}

} // namespace virtsnap::hypervisor
