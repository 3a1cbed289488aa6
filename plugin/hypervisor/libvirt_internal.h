// The libvirt driver's parts, which libvirt_driver.h (what the daemon and
// the engine include) need not show: the domain every part works on, and
// what each file beside it offers the others.
//
//   libvirt_driver.cc           the Driver interface, handing each call on
//   libvirt_domain.cc           the domain: its description, state and disks
//   libvirt_checkpoints.cc      checkpoints: list, redefine, drop, reconcile
//   libvirt_backup_capture.cc   a running domain's capture: a pull-mode backup
//   libvirt_offline_capture.cc  a shut-off domain's: a qemu-storage-daemon
//   libvirt_freeze.cc           the freeze through libvirt's agent channel
//   libvirt_watchdog.cc         calls that wait on QEMU's monitor, bounded
#pragma once

#include <libvirt/libvirt.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "capture.h"
#include "domain_xml.h"
#include "json/json.h"

namespace virtsnap::hypervisor {

// The message of libvirt's last error on this thread.
std::string lastLibvirtError();
// HypervisorError: "WHAT: libvirt's message".
std::unexpected<Error> libvirtFail(const std::string &what);

// A reference of its own to a domain and its connection, for a thread that
// may outlive whoever started it (a libvirt call left to finish late).
class DomainRef
{
public:
	explicit DomainRef(virDomainPtr dom) : dom_(dom)
	{
		virConnectRef(virDomainGetConnect(dom_));
		virDomainRef(dom_);
	}
	DomainRef(DomainRef &&other) noexcept : dom_(std::exchange(other.dom_, nullptr)) {}
	DomainRef(const DomainRef &) = delete;
	DomainRef &operator=(const DomainRef &) = delete;
	DomainRef &operator=(DomainRef &&) = delete;
	~DomainRef()
	{
		if (!dom_)
			return;
		virConnectPtr conn = virDomainGetConnect(dom_);
		virDomainFree(dom_);
		virConnectClose(conn);
	}
	virDomainPtr get() const { return dom_; }

private:
	virDomainPtr dom_;
};

// One domain on a connection of its own. Methods named ...Locked want
// mutex() held: it keeps one change of libvirt's checkpoints or backup job
// at a time.
class LibvirtDomain
{
public:
	// Takes over both references.
	LibvirtDomain(virConnectPtr conn, virDomainPtr dom, std::chrono::milliseconds monitorTimeout)
		: conn_(conn), dom_(dom), monitorTimeout_(monitorTimeout)
	{
	}
	~LibvirtDomain();
	LibvirtDomain(const LibvirtDomain &) = delete;
	LibvirtDomain &operator=(const LibvirtDomain &) = delete;

	virDomainPtr dom() const { return dom_; }
	std::mutex &mutex() { return mutex_; }

	// libvirt_domain.cc
	// "domain 'NAME'", for messages.
	std::string describe() const;
	Result<DomainDescription> description();
	// "running", "paused", "shut off", ...
	Result<std::string> state();
	Result<std::vector<DiskInfo>> disksLocked();
	// From the description alone: no image is opened.
	Result<std::vector<DiskInfo>> configuredDisks();
	// The value of the libvirt secret `uuid`; nothing when the secret is
	// private (libvirt then gives its value to no client).
	Result<std::optional<std::string>> secretValue(const std::string &uuid);
	// Defines secret `uuid`, ephemeral and private (libvirt keeps it in
	// memory and gives its value to no client), holding `value`.
	Result<void> defineSecret(const std::string &uuid, const std::string &value);
	// Best effort: it may be gone already.
	void undefineSecret(const std::string &uuid);

	// libvirt_watchdog.cc
	// A libvirt call that returns < 0 on failure and may put text (a
	// reply) in *text.
	using MonitorCall = std::function<int(virDomainPtr, std::string *text)>;
	using LateUndo = std::function<void(virDomainPtr)>;
	// Runs `call`, which waits on QEMU's monitor, for the monitor timeout
	// at most ([hypervisor] timeout). Returns its text, or a
	// HypervisorError naming `what`: its failure, or QEMU not answering
	// in time. A late call runs on to its end on its own thread, and if it
	// succeeds then, `undoIfLate` undoes it (a backup job nobody reads).
	Result<std::string> monitorCall(const std::string &what, MonitorCall call, LateUndo undoIfLate = {});
	// QEMU's query-block ("return": one entry per device), read-only QMP
	// through libvirt, within the monitor timeout.
	Result<Json> queryBlock();
	std::chrono::milliseconds monitorTimeout() const { return monitorTimeout_; }

	// libvirt_checkpoints.cc
	Result<std::vector<CheckpointDescription>> checkpointsLocked();
	// A checkpoint over bitmaps named `name` that `disks` hold already.
	Result<void> redefineLocked(const std::string &name, const std::vector<std::string> &disks);
	// Deletes a checkpoint and its bitmaps; falls back to the metadata
	// when some disk lost its bitmap already.
	void dropCheckpointLocked(const std::string &name);
	// Our checkpoints and bitmaps that nothing continues from.
	void dropUnneededLocked(const std::vector<std::string> &keep);
	// Redefines the checkpoints of `needed` that libvirt lost and whose
	// bitmaps are there; returns what it did, for the log.
	Result<std::vector<std::string>> reconcileLocked(const std::vector<std::string> &needed);
	// Every checkpoint's metadata, the bitmaps being gone with the images.
	void forgetCheckpointsLocked();

private:
	virConnectPtr conn_;
	virDomainPtr dom_;
	std::chrono::milliseconds monitorTimeout_;
	std::mutex mutex_;
};

// libvirt_freeze.cc
std::unique_ptr<Quiescer> freezeThroughLibvirt(std::shared_ptr<LibvirtDomain> domain, QuiesceMode mode,
					       std::chrono::milliseconds timeout);

// libvirt_backup_capture.cc
// The capture of a running (or paused) domain: `domain` stays alive with it.
Result<std::unique_ptr<Capture>> captureRunning(std::shared_ptr<LibvirtDomain> domain, const CaptureSpec &spec);
// What such a capture's cleanupRecord() names: its backup job, its
// checkpoint and its scratch directory. Other records are not its own.
void removeBackupLeftovers(LibvirtDomain &domain, const std::string &cleanupRecord);

// libvirt_offline_capture.cc
// The capture of a shut-off domain, from its images.
Result<std::unique_ptr<Capture>> captureOffline(LibvirtDomain &domain, const CaptureSpec &spec);

} // namespace virtsnap::hypervisor
