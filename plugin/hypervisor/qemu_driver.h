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
#include <optional>
#include <string>
#include <vector>

#include "capture.h"
#include "qmp/qmp_client.h"

namespace virtsnap::hypervisor {

// "/machine/peripheral/vda/virtio-backend" -> "vda"; "" for other paths.
std::string qdevId(const std::string &qdev);
// The "dirty-bitmaps" list of query-block or query-named-block-nodes.
std::vector<BitmapInfo> bitmapsFromQmp(const virtsnap::Json &list);

class QemuDriver : public Driver
{
public:
	// HypervisorError naming the socket when nothing answers there.
	// `workDir` (private, short path) holds the NBD socket; a driver that
	// only queries may leave it empty.
	static Result<std::shared_ptr<QemuDriver>> connect(const std::string &qmpSocket,
							   const std::filesystem::path &workDir = {},
							   std::chrono::milliseconds monitorTimeout = kDefaultMonitorTimeout);
	// A qemu-storage-daemon that opened an instance's images while the
	// instance is off: it has no devices and no run state, so the disks
	// are the format nodes named `nodes` (their node names are the disk
	// ids) and the instance is `instance`.
	static Result<std::shared_ptr<QemuDriver>> connectStorageDaemon(const std::string &qmpSocket,
									const std::filesystem::path &workDir,
									InstanceInfo instance,
									std::vector<std::string> nodes);
	~QemuDriver() override;

	const std::string &socket() const { return socket_; }

	std::string describe() const override { return "the instance at " + socket_; }
	Result<InstanceInfo> instance() override;
	Result<std::vector<DiskInfo>> disks() override;
	Result<DiskInfo> disk(const std::string &diskId) override;
	// The guest agent at `qgaSocket`.
	std::unique_ptr<Quiescer> quiescer(QuiesceMode mode, std::chrono::milliseconds timeout,
					   const std::string &qgaSocket) override;

	// Fixes one point in time across all requested disks: scratch overlays
	// first, then freeze, one transaction, thaw, then the NBD exports.
	Result<std::unique_ptr<Capture>> capture(const CaptureSpec &spec) override;

	// Exports, fleecing jobs, scratch nodes and files, and the capture's
	// new bitmaps.
	void removeLeftovers(const std::string &cleanupRecord) override;

	// Instant restore (qemu_pull.cc): blockdev-add of the image, and
	// block-stream on a node (or a disk's format node) as job
	// "vs-pull-NODE", kept until its end is read (auto-dismiss off).
	Result<void> openImage(const std::string &node, const std::filesystem::path &file) override;
	void closeImage(const std::string &node) override;
	Result<void> startPull(const std::string &disk, uint64_t bytesPerSecond) override;
	Result<PullStatus> pullStatus(const std::string &disk) override;

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
	// The steps of capture(), in order.
	Result<void> nameDisksLocked(QemuCapture &cap, const CaptureSpec &spec);
	Result<void> addScratchLocked(QemuCapture &cap, const std::filesystem::path &scratchDir);
	static Json transactionActions(const QemuCapture &cap);
	Result<void> pointInTimeLocked(QemuCapture &cap, Quiescer *quiescer);
	Result<void> exportLocked(QemuCapture &cap);
	// A disk id's format node, or `disk` itself taken as a node name.
	std::string pullNodeLocked(const std::string &disk);

	std::mutex mutex_;
	std::unique_ptr<qmp::QmpClient> qmp_;
	std::string socket_;
	std::filesystem::path workDir_;
	int nbdUsers_ = 0;
	// Storage-daemon mode (see connectStorageDaemon).
	std::optional<InstanceInfo> fixedInstance_;
	std::vector<std::string> nodes_;
	std::weak_ptr<QemuDriver> self_;
};

} // namespace virtsnap::hypervisor
