// The one shape every hypervisor driver's capture ends in (DESIGN.md,
// "Layers"): per disk, a read-only point-in-time NBD export, and the name of
// a dirty bitmap on it when only changes need reading. The engine reads this
// shape and does not care who made it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/product_code.h"

namespace virtsnap::hypervisor {

// How long a driver waits for QEMU's monitor to answer one command, itself
// or through libvirt, before it gives up on a stopped or hung QEMU:
// [hypervisor] timeout.
inline constexpr std::chrono::milliseconds kDefaultMonitorTimeout{30'000};

struct BitmapInfo {
	std::string name;
	uint64_t granularity = 0;
	bool persistent = false;
	bool recording = false;
	bool busy = false;
	bool inconsistent = false;
};

struct DiskInfo {
	std::string diskId;   // qdev id ("vda"), or the node name of a disk without a device
	std::string nodeName; // the format node the device reads
	std::string format;   // "qcow2", "raw", ...
	std::string filename;
	uint64_t size = 0;
	int bootIndex = -1;   // -1: none set
	std::vector<BitmapInfo> bitmaps;
	// The image is encrypted (LUKS in a qcow2, or a LUKS image): QEMU's
	// format node decrypts, so what a capture reads is the guest's data.
	bool encrypted = false;
	// libvirt: the uuid of the <secret> its <encryption> names ("": none).
	std::string encryptionSecret;

	const BitmapInfo *bitmap(const std::string &name) const
	{
		for (const BitmapInfo &b : bitmaps)
			if (b.name == name)
				return &b;
		return nullptr;
	}
};

struct InstanceInfo {
	std::string key;    // what volume ids derive from: "uuid:...", "name:..." or "socket:..."
	std::string name;
	std::string uuid;
	std::string status; // the run state ("running", "paused", "suspended", "shut off", ...)
	// Snapshots are refused: a hibernated guest's disks do not hold what
	// it will see when it resumes, and one that may hibernate could do so
	// in the middle of a set.
	bool hibernated = false;
	bool hibernationEnabled = false;
	std::vector<ProductCode> productCodes; // what the instance declares (a libvirt domain's metadata)
};

struct CaptureRequest {
	std::string diskId;
	std::string newBitmap;    // starts tracking changes at this point in time
	std::string parentBitmap; // changes since the parent are read from it; "" = full
	uint64_t granularity = 0; // of the new bitmap; divides the chunk size
	bool persistent = true;   // qcow2 keeps bitmaps across restarts; raw cannot
	// Dropped on commit besides the parent's: leftovers of deleted or
	// interrupted snapshots that nothing will read again.
	std::vector<std::string> obsoleteBitmaps;
};

struct DiskExport {
	std::string diskId;
	std::string nbdSocket;
	std::string exportName;
	uint64_t size = 0;
	std::string dirtyBitmapContext; // "qemu:dirty-bitmap:NAME"; "" = read everything allocated
	// How long the export may leave a request unanswered before the copy
	// gives up on a stopped or hung QEMU: the driver's monitor timeout.
	std::chrono::milliseconds answerTimeout = kDefaultMonitorTimeout;
};

enum class QuiesceMode { Off, Try, Required };

// The background copy of an instant restore (engine/instant_restore.h):
// QEMU's block-stream, libvirt's block pull.
struct PullStatus {
	enum class State { Running, Done, Failed };
	State state = State::Running;
	uint64_t done = 0, total = 0; // bytes, as the hypervisor counts them
	std::string error;            // Failed: why
};

// Freezes the guest's filesystems around the point in time. thaw() must be
// safe to call whatever freeze() returned.
class Quiescer
{
public:
	virtual ~Quiescer() = default;
	// With Try, a failure to freeze is not an error: the snapshot goes on
	// crash-consistent and fallbackReason() says why. With Required it is.
	virtual Result<void> freeze() = 0;
	virtual void thaw() = 0;
	virtual bool frozen() const = 0;
	// From freeze sent to thaw answered; -1 when nothing was frozen.
	virtual int64_t freezeMillis() const = 0;
	virtual const std::string &fallbackReason() const = 0;
};

// A point in time, held open while its exports are read. Destroying it tears
// everything down; unless commit() ran, the new bitmaps go too, and the
// parents' stay, so the next incremental covers a superset.
class Capture
{
public:
	virtual ~Capture() = default;
	virtual const std::vector<DiskExport> &exports() const = 0;
	// The snapshots are durable: drop the parents' bitmaps, keep the new.
	virtual Result<void> commit() = 0;
	// What to remove if this process dies before the capture ends, in a
	// form the same driver reads back (an opaque JSON text): written to
	// the job record before any data moves.
	virtual std::string cleanupRecord() const = 0;
};

// InvalidDisk.NotFound naming the disk, `where`, and the disks there are.
Result<DiskInfo> findDisk(std::vector<DiskInfo> disks, const std::string &diskId, const std::string &where);

struct CaptureSpec {
	std::vector<CaptureRequest> disks;
	std::filesystem::path scratchDir; // private to this capture
	Quiescer *quiescer = nullptr;     // borrowed; null = no freeze
	// Bitmaps that volumes outside this capture still continue from. A
	// driver whose bitmaps span disks (libvirt's checkpoints) keeps them
	// on commit even when a parent here is done with them.
	std::vector<std::string> stillNeeded;
	// Called, when set, once the driver knows every name it will create
	// and before it creates any, with what cleanupRecord() would say of
	// them all: the caller makes it durable, so that a process killed
	// mid-capture leaves nothing removeLeftovers() cannot find. Its
	// failure fails the capture, with nothing made.
	std::function<Result<void>(const std::string &cleanupRecord)> beforeChanges;
};

// Where an instance runs and how to reach it: the engine and the daemon
// see only this.
class Driver
{
public:
	virtual ~Driver() = default;
	// Names the instance in messages: "the instance at /run/vm1.qmp".
	virtual std::string describe() const = 0;
	virtual Result<InstanceInfo> instance() = 0;
	virtual Result<std::vector<DiskInfo>> disks() = 0;
	// InvalidDisk.NotFound naming the disk and the disks there are.
	virtual Result<DiskInfo> disk(const std::string &diskId);
	// The disks as configured (ids, files, formats, boot order), without
	// reading the images: a restore replaces images that may be missing
	// or damaged. Sizes and bitmaps may be unknown.
	virtual Result<std::vector<DiskInfo>> configuredDisks() { return disks(); }
	// True when one capture makes one bitmap name for all its disks (a
	// libvirt checkpoint), so every snapshot of a set records that name.
	virtual bool sharedBitmapNames() const { return false; }
	// True when the hypervisor runs one capture of an instance at a time
	// (libvirt: one backup job per domain), not one per disk.
	virtual bool oneCaptureAtATime() const { return false; }
	// Brings the hypervisor's own records in line with what virtsnap
	// continues from (`needed`: the bitmap of each volume's latest
	// snapshot) before disks() is read for planning. Returns what it
	// changed, for the log.
	virtual Result<std::vector<std::string>> reconcile(const std::vector<std::string> &needed)
	{
		(void)needed;
		return std::vector<std::string>{};
	}
	// The freeze this instance offers; `qgaSocket` is for drivers that
	// reach the agent themselves ("" = none).
	virtual std::unique_ptr<Quiescer> quiescer(QuiesceMode mode, std::chrono::milliseconds timeout,
						   const std::string &qgaSocket) = 0;
	// Fixes one point in time across the disks; the capture keeps the
	// driver alive.
	virtual Result<std::unique_ptr<Capture>> capture(const CaptureSpec &spec) = 0;
	// Removes what an interrupted capture left, from the record its
	// Capture::cleanupRecord() gave.
	virtual void removeLeftovers(const std::string &cleanupRecord) = 0;
	// The instance's images were replaced while it was shut off (a
	// restore): whatever the hypervisor keeps about bitmaps in the old ones
	// is stale. The next snapshot of each disk reads it in full anyway.
	virtual void imagesReplaced() {}
	// The passphrase of an encrypted disk's image, when the hypervisor
	// keeps it and lets us read it (libvirt: the value of the disk's
	// <secret>, unless the secret is private); nothing otherwise.
	virtual Result<std::optional<std::string>> diskPassphrase(const DiskInfo &disk)
	{
		(void)disk;
		return std::optional<std::string>();
	}

	// Instant restore. Opens the qcow2 image `file` (its backing read from
	// its header) as node `node`, for a device to be added on it: a plain
	// QEMU's blockdev-add. Unsupported elsewhere.
	virtual Result<void> openImage(const std::string &node, const std::filesystem::path &file);
	// Closes what openImage opened (a start that failed after it).
	virtual void closeImage(const std::string &node) { (void)node; }
	// Starts, or starts again (what was copied stays), copying what disk
	// or node `disk` reads from its backing into its own image, after
	// which the image has no backing. `bytesPerSecond` 0: unlimited.
	virtual Result<void> startPull(const std::string &disk, uint64_t bytesPerSecond);
	// Where that copy is; Failed once it ended in an error (or is gone).
	virtual Result<PullStatus> pullStatus(const std::string &disk);
	// Starts the shut-off instance on its (restored) images.
	virtual Result<void> startInstance();

	// Keeps `resource` (say, the work directory) alive as long as the
	// driver: captures hold the driver, so it outlives every one of them.
	void holdWhileAlive(std::shared_ptr<void> resource) { held_ = std::move(resource); }

private:
	std::shared_ptr<void> held_; // in the base, so destroyed last
};

} // namespace virtsnap::hypervisor
