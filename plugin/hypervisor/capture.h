// The one shape every hypervisor driver's capture ends in (DESIGN.md,
// "Layers"): per disk, a read-only point-in-time NBD export, and the name of
// a dirty bitmap on it when only changes need reading. The engine reads this
// shape and does not care who made it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::hypervisor {

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
	std::string status; // QEMU's run state ("running", "paused", "suspended", ...)
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
};

// Freezes the guest's filesystems around the point in time. thaw() must be
// safe to call whatever freeze() returned.
class Quiescer
{
public:
	virtual ~Quiescer() = default;
	virtual Result<void> freeze() = 0;
	virtual void thaw() = 0;
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

} // namespace virtsnap::hypervisor
