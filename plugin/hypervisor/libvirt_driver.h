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
//
// This header is the driver as the daemon and the engine see it; its parts,
// one file each, meet in libvirt_internal.h.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "capture.h"
#include "domain_xml.h"

namespace virtsnap::hypervisor {

class LibvirtDomain; // libvirt_internal.h

class LibvirtDriver : public Driver
{
public:
	// InvalidInstanceID.NotFound when the domain is not there;
	// HypervisorError when libvirt is not.
	// Calls that wait on QEMU's monitor give up after `monitorTimeout`.
	static Result<std::shared_ptr<LibvirtDriver>> connect(const std::string &uri, const std::string &domain,
							      std::chrono::milliseconds monitorTimeout = kDefaultMonitorTimeout);
	~LibvirtDriver() override;

	std::string describe() const override;
	Result<InstanceInfo> instance() override;
	Result<std::vector<DiskInfo>> disks() override;
	// From the domain's XML: the images are not opened.
	Result<std::vector<DiskInfo>> configuredDisks() override;
	bool sharedBitmapNames() const override { return true; }
	bool oneCaptureAtATime() const override { return true; }
	Result<std::vector<std::string>> reconcile(const std::vector<std::string> &needed) override;
	std::unique_ptr<Quiescer> quiescer(QuiesceMode mode, std::chrono::milliseconds timeout,
					   const std::string &qgaSocket) override;
	Result<std::unique_ptr<Capture>> capture(const CaptureSpec &spec) override;
	void removeLeftovers(const std::string &cleanupRecord) override;
	// Instant restore (libvirt_pull.cc): virDomainBlockPull of a running
	// domain's disk, its state from virDomainGetBlockJobInfo, and once
	// libvirt has no job, from whether the disk still has a backing.
	Result<void> startPull(const std::string &disk, uint64_t bytesPerSecond) override;
	Result<PullStatus> pullStatus(const std::string &disk) override;
	Result<void> startInstance() override;

	Result<DomainDescription> description();
	// "running", "paused", "shut off", ...
	Result<std::string> state();
	// Drops every checkpoint libvirt has of this domain, metadata only: the
	// images that held their bitmaps are gone.
	void imagesReplaced() override;
	Result<std::optional<std::string>> diskPassphrase(const DiskInfo &disk) override;

private:
	explicit LibvirtDriver(std::unique_ptr<LibvirtDomain> domain);
	// The domain, through a pointer that also keeps this driver alive: what
	// a capture or a freeze holds, as neither may outlive the driver.
	std::shared_ptr<LibvirtDomain> sharedDomain();

	std::unique_ptr<LibvirtDomain> domain_;
	std::weak_ptr<LibvirtDriver> self_;
};

// A running domain that opted in to lifecycle policies through its
// metadata (domain_xml.h's parsePolicyMetadata), as
// examples/snapshot-tagged-domains reads it.
struct TaggedDomain {
	std::string uuid, name;
	std::vector<std::pair<std::string, std::string>> tags;
};
// The running domains at `uri` that carry such metadata; the others, and
// those gone while they were listed, are left out. No libvirt answering at
// `uri` (a host without it) is no domain, and `warn` says so.
Result<std::vector<TaggedDomain>> listTaggedDomains(const std::string &uri,
						   const std::function<void(const std::string &)> &warn);

} // namespace virtsnap::hypervisor
