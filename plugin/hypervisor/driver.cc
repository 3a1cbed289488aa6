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

} // namespace virtsnap::hypervisor
