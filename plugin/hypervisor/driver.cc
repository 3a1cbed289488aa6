#include "capture.h"

namespace virtsnap::hypervisor {

Result<DiskInfo> findDisk(std::vector<DiskInfo> disks, const std::string &diskId, const std::string &where)
{
	std::string names;
	for (DiskInfo &d : disks) {
		if (d.diskId == diskId || d.nodeName == diskId)
			return std::move(d);
		names += (names.empty() ? "" : ", ") + d.diskId;
	}
	return fail(errc::kDiskNotFound, "no disk '" + diskId + "' in " + where +
						 (names.empty() ? " (it has no disks)" : " (it has: " + names + ")"));
}

Result<DiskInfo> Driver::disk(const std::string &diskId)
{
	VS_ASSIGN(auto all, disks());
	return findDisk(std::move(all), diskId, describe());
}

Result<void> Driver::openImage(const std::string &node, const std::filesystem::path &file)
{
	(void)file;
	return fail(errc::kInvalidParameterValue,
		    describe() + " cannot open an image as node " + node + " (only a plain QEMU's --qmp-socket can)");
}

Result<void> Driver::startPull(const std::string &disk, uint64_t bytesPerSecond)
{
	(void)bytesPerSecond;
	return fail(errc::kInvalidParameterValue, describe() + " cannot copy disk " + disk + " from its backing");
}

Result<PullStatus> Driver::pullStatus(const std::string &disk)
{
	return fail(errc::kInvalidParameterValue, describe() + " cannot copy disk " + disk + " from its backing");
}

Result<void> Driver::startInstance()
{
	return fail(errc::kInvalidParameterValue, "virtsnap cannot start " + describe());
}

} // namespace virtsnap::hypervisor
