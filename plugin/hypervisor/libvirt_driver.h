// Captures from a libvirt domain through libvirt, which owns the domain's
// monitor and agent channel (DESIGN.md): the point in time is a pull-mode
// backup (virDomainBackupBegin) that creates a checkpoint, the freeze is
// virDomainFSFreeze, and QMP through libvirt serves read-only queries only
// (bitmap states), because a write behind libvirt's back desynchronises its
// view of the block graph.
//
// A shut-off domain is read from its image files through a
// qemu-storage-daemon this driver starts: the same fleecing sequence as a
// plain QEMU, persistent bitmaps and all, and no guest to freeze.
//
// Checkpoints are named after what virtsnap records as the bitmap of a
// snapshot (the set id, or the snapshot id of a single disk). reconcile()
// redefines the ones libvirt lost; a commit deletes the ones nothing
// continues from, and the bitmaps without a checkpoint.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "capture.h"
#include "domain_xml.h"

namespace virtsnap::hypervisor {

class LibvirtDriver : public Driver
{
public:
	// InvalidInstanceID.NotFound when the domain is not there;
	// HypervisorError when libvirt is not.
	static Result<std::shared_ptr<LibvirtDriver>> connect(const std::string &uri, const std::string &domain);
	~LibvirtDriver() override;

	std::string describe() const override;
	Result<InstanceInfo> instance() override;
	Result<std::vector<DiskInfo>> disks() override;
	bool sharedBitmapNames() const override { return true; }
	bool oneCaptureAtATime() const override { return true; }
	Result<std::vector<std::string>> reconcile(const std::vector<std::string> &needed) override;
	std::unique_ptr<Quiescer> quiescer(QuiesceMode mode, std::chrono::milliseconds timeout,
					   const std::string &qgaSocket) override;
	Result<std::unique_ptr<Capture>> capture(const CaptureSpec &spec) override;
	void removeLeftovers(const std::string &cleanupRecord) override;

	Result<DomainDescription> description();
	// "running", "paused", "shut off", ...
	Result<std::string> state();
	// Drops every checkpoint libvirt has of this domain, metadata only: the
	// images that held their bitmaps are gone.
	void imagesReplaced() override;

private:
	class Connection;
	class BackupCapture;
	class OfflineCapture;
	class FreezeThroughLibvirt;

	explicit LibvirtDriver(std::unique_ptr<Connection> connection);
	Result<std::vector<DiskInfo>> disksLocked();
	Result<std::vector<CheckpointDescription>> checkpointsLocked();
	Result<void> redefineLocked(const std::string &name, const std::vector<std::string> &disks);
	// Deletes a checkpoint and its bitmaps; falls back to the metadata
	// when some disk lost its bitmap already.
	void dropCheckpointLocked(const std::string &name);
	// Our checkpoints and bitmaps that nothing continues from.
	void dropUnneededLocked(const std::vector<std::string> &keep);
	Result<std::unique_ptr<Capture>> captureRunning(const CaptureSpec &spec);
	// The user and group QEMU runs as, from the domain's DAC label.
	std::optional<std::pair<unsigned, unsigned>> qemuUserLocked();
	Result<std::unique_ptr<Capture>> captureOffline(const CaptureSpec &spec);

	std::unique_ptr<Connection> connection_;
	std::mutex mutex_;
	std::weak_ptr<LibvirtDriver> self_;
};

} // namespace virtsnap::hypervisor
