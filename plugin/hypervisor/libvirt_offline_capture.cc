// A shut-off domain's capture: its images opened by a qemu-storage-daemon
// and captured by the plain QEMU driver, with the same fleecing sequence
// as a running QEMU, persistent bitmaps and all, and no guest to freeze.
#include <algorithm>

#include "json/json.h"
#include "libvirt_internal.h"
#include "qemu_driver.h"
#include "storage_daemon.h"

namespace virtsnap::hypervisor {

namespace {

// Members go in reverse: the capture, then the driver's monitor connection,
// then the daemon's clean quit.
class OfflineCapture : public Capture
{
public:
	const std::vector<DiskExport> &exports() const override { return inner_->exports(); }
	Result<void> commit() override { return inner_->commit(); }
	std::string cleanupRecord() const override
	{
		// Nothing of an offline capture outlives its process but files
		// in its work directory, and the daemon holds the bitmaps
		// until it quits: a crash leaves the images as they were.
		Json r = Json::object();
		r.set("driver", Json::string("libvirt-offline"));
		return r.dump();
	}

	std::unique_ptr<StorageDaemon> daemon_;
	std::shared_ptr<QemuDriver> driver_;
	std::unique_ptr<Capture> inner_;
};

} // namespace

Result<std::unique_ptr<Capture>> captureOffline(LibvirtDomain &domain, const CaptureSpec &spec)
{
	VS_ASSIGN(const DomainDescription desc, domain.description());
	std::vector<StorageDaemonDisk> images;
	std::vector<std::string> nodes;
	for (const CaptureRequest &r : spec.disks) {
		auto d = std::find_if(desc.disks.begin(), desc.disks.end(),
				      [&](const DomainDisk &x) { return x.target == r.diskId; });
		if (d == desc.disks.end())
			return fail(errc::kDiskNotFound, "no disk '" + r.diskId + "' in " + domain.describe());
		StorageDaemonDisk image{d->target, d->source, d->format.empty() ? "raw" : d->format, ""};
		if (!d->encryptionFormat.empty()) {
			// QEMU needs the passphrase to open the image at all.
			VS_ASSIGN(auto passphrase, domain.secretValue(d->encryptionSecret));
			if (!passphrase)
				return fail(errc::kHypervisor,
					    "disk " + r.diskId + " of " + domain.describe() +
						    " is encrypted and shut off, and libvirt keeps its secret private: it "
						    "can be read only while the domain runs");
			image.passphrase = std::move(*passphrase);
		}
		images.push_back(std::move(image));
		nodes.push_back(d->target);
	}
	auto cap = std::make_unique<OfflineCapture>();
	if (spec.beforeChanges)
		VS_TRY(spec.beforeChanges(cap->cleanupRecord()));
	auto daemon = StorageDaemon::start(images, spec.scratchDir);
	if (!daemon)
		return fail(errc::kHypervisor, domain.describe() +
						       " is shut off, and its images could not be opened: " +
						       daemon.error().message);
	cap->daemon_ = std::move(*daemon);
	InstanceInfo info;
	info.name = desc.name;
	info.uuid = desc.uuid;
	info.key = "uuid:" + desc.uuid;
	info.status = "shut off";
	VS_ASSIGN(cap->driver_,
		  QemuDriver::connectStorageDaemon(cap->daemon_->qmpSocket(), spec.scratchDir, info, nodes));
	CaptureSpec inner = spec;
	inner.quiescer = nullptr;
	// The record is this capture's, given above: the storage daemon's
	// nodes die with it.
	inner.beforeChanges = nullptr;
	VS_ASSIGN(cap->inner_, cap->driver_->capture(inner));
	return std::unique_ptr<Capture>(std::move(cap));
}

} // namespace virtsnap::hypervisor
