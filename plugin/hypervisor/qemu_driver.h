// Captures from a plain QEMU over its QMP socket, with the pull-mode
// fleecing sequence of DESIGN.md ("Capturing a point in time").
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "capture.h"
#include "qmp/qmp_client.h"

namespace virtsnap::hypervisor {

class QemuDriver
{
public:
	// HypervisorError naming the socket when nothing answers there.
	static Result<std::unique_ptr<QemuDriver>> connect(const std::string &qmpSocket);

	Result<InstanceInfo> instance();
	Result<std::vector<DiskInfo>> disks();
	// InvalidDisk.NotFound naming the disk and the disks there are.
	Result<DiskInfo> disk(const std::string &diskId);

	// Fixes one point in time across all requested disks: scratch overlays
	// first, then freeze, one transaction, thaw, then the NBD exports.
	// `workDir` holds the scratch files and the NBD socket.
	Result<std::unique_ptr<Capture>> capture(const std::vector<CaptureRequest> &requests,
						 const std::filesystem::path &workDir, Quiescer *quiescer);

private:
	explicit QemuDriver(std::unique_ptr<qmp::QmpClient> qmp, std::string socket)
		: qmp_(std::move(qmp)), socket_(std::move(socket))
	{
	}

	std::unique_ptr<qmp::QmpClient> qmp_;
	std::string socket_;
};

} // namespace virtsnap::hypervisor
