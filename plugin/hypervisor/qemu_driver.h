// Captures from a plain QEMU over its QMP socket, with the pull-mode
// fleecing sequence of DESIGN.md ("Capturing a point in time").
//
// One driver per instance is shared by every capture of that instance: QEMU
// serves one client per monitor and runs one NBD server, so the driver owns
// the monitor connection (behind a mutex; captures on other threads go
// through it) and starts the NBD server for the first live capture and
// stops it after the last.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "capture.h"
#include "qmp/qmp_client.h"

namespace virtsnap::hypervisor {

class QemuDriver
{
public:
	// HypervisorError naming the socket when nothing answers there.
	// `workDir` (private, short path) holds the NBD socket; a driver that
	// only queries may leave it empty.
	static Result<std::shared_ptr<QemuDriver>> connect(const std::string &qmpSocket,
							   const std::filesystem::path &workDir = {});
	~QemuDriver();

	const std::string &socket() const { return socket_; }
	// Keeps `resource` (say, the work directory) alive as long as the
	// driver: captures hold the driver, so it outlives every one of them.
	void holdWhileAlive(std::shared_ptr<void> resource) { held_ = std::move(resource); }

	Result<InstanceInfo> instance();
	Result<std::vector<DiskInfo>> disks();
	// InvalidDisk.NotFound naming the disk and the disks there are.
	Result<DiskInfo> disk(const std::string &diskId);

	// Fixes one point in time across all requested disks: scratch overlays
	// first, then freeze, one transaction, thaw, then the NBD exports.
	// `scratchDir` holds the scratch files. The capture keeps the driver
	// alive.
	Result<std::unique_ptr<Capture>> capture(const std::vector<CaptureRequest> &requests,
						 const std::filesystem::path &scratchDir, Quiescer *quiescer);

	// Removes what an interrupted capture left in QEMU and on disk, from
	// the record its Capture::cleanupRecord() gave: exports, fleecing jobs,
	// scratch nodes and files, and the capture's new bitmaps.
	void removeLeftovers(const std::string &cleanupRecord);

private:
	class QemuCapture;
	friend class QemuCapture;

	QemuDriver(std::unique_ptr<qmp::QmpClient> qmp, std::string socket, std::filesystem::path workDir)
		: qmp_(std::move(qmp)), socket_(std::move(socket)), workDir_(std::move(workDir))
	{
	}
	// Callers hold mutex_.
	Result<std::vector<DiskInfo>> disksLocked();
	Result<DiskInfo> diskLocked(const std::string &diskId);
	Result<std::string> acquireNbdLocked();
	void releaseNbdLocked();

	std::shared_ptr<void> held_; // first, so destroyed last
	std::mutex mutex_;
	std::unique_ptr<qmp::QmpClient> qmp_;
	std::string socket_;
	std::filesystem::path workDir_;
	int nbdUsers_ = 0;
	std::weak_ptr<QemuDriver> self_;
};

} // namespace virtsnap::hypervisor
