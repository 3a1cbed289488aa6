// Takes snapshots: picks the disks, decides full or incremental per disk,
// fixes one point in time for all of them through a hypervisor driver (with
// the guest frozen around it when asked), streams what changed into the
// store, and commits in the order FORMAT.md prescribes. A single-disk
// snapshot is a set of one.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/states.h"
#include "hypervisor/capture.h"
#include "store/manifest.h"
#include "store/store.h"

namespace virtsnap::engine {

// Called from worker threads; must be thread-safe.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

inline constexpr size_t kMaxSetDisks = 40;

struct SnapshotSetRequest {
	// The instance (the daemon keeps one driver per instance).
	std::shared_ptr<hypervisor::Driver> driver;
	std::string target;                    // hypervisor::Target::key(), for job and volume records
	std::string qgaSocket;                 // for drivers that reach the agent themselves
	std::vector<std::string> disks;        // the disks; empty = every disk of the instance
	std::vector<std::string> excludeDisks;
	bool excludeBootVolume = false;
	bool copyTagsFromSource = false;
	hypervisor::QuiesceMode quiesce = hypervisor::QuiesceMode::Off;
	std::chrono::milliseconds freezeTimeout{10000};
	std::string description;
	std::string name;
	std::string ownerId;
	std::string accountId; // the owning account (engine/accounts.h)
	store::Tags tags;
	std::function<void(const std::string &)> warn;
	// Ids given out before the point in time (a queued request): disk id
	// -> snapshot id, and the set's id. Empty: new ones.
	std::map<std::string, std::string> snapshotIds;
	std::string snapshotSetId;
	// Called with the snapshots' ids and the capture's cleanup record
	// before the capture changes the instance (CaptureSpec::beforeChanges).
	std::function<Result<void>(const std::vector<std::string> &snapshotIds, const std::string &cleanupRecord)>
		beforeCapture;
	// Disks of the set copied at once; 0: as many as the cores can feed
	// (disksAtOnce).
	unsigned parallelDisks = 0;
};

// How many of a set of `disks` disks are copied side by side: `requested`,
// or from the cores when 0; never more than the disks, never 0.
unsigned disksAtOnce(size_t disks, unsigned requested);

// The disks a request names, after exclusions (what beginSnapshots takes).
Result<std::vector<hypervisor::DiskInfo>> selectDisks(hypervisor::Driver &driver,
						      const SnapshotSetRequest &request);

struct SnapshotOutcome {
	store::Manifest manifest; // complete when state is Completed
	SnapshotState state = SnapshotState::Pending;
	std::string stateMessage;
};

// A set whose point in time is fixed and whose data has not moved yet.
// Destroyed without run(), it tears the capture down and drops the new
// bitmaps, like any failure.
class SnapshotJob
{
public:
	virtual ~SnapshotJob() = default;
	// The snapshots, "pending", with ids, volumes, start time and
	// consistency already known.
	virtual std::vector<SnapshotOutcome> pending() const = 0;
	// What a later process must remove if this one dies before run()
	// returns (the driver's cleanup record, JSON).
	virtual std::string cleanupRecord() const = 0;
	// Moves the data and commits. If any disk fails, every snapshot of the
	// set is "error", no manifest of the set stays, and no new bitmap is
	// left. `cancelled` is polled between steps.
	virtual std::vector<SnapshotOutcome> run(const ProgressFn &progress,
						 const std::function<bool()> &cancelled) = 0;
};

// Errors before any snapshot exists (no instance, unknown disk, nothing
// left after exclusions, a hibernated instance, a required freeze that
// failed) come back as an Error and change nothing. A failure after the
// transaction comes back as a job whose pending() are all "error".
Result<std::unique_ptr<SnapshotJob>> beginSnapshots(store::Store &store, const SnapshotSetRequest &request);

// What a snapshot does first, alone (a libvirt domain that just started):
// brings the hypervisor's records in line with the volumes' latest
// snapshots. Returns what changed.
Result<std::vector<std::string>> reconcileInstance(store::Store &store, hypervisor::Driver &driver);


} // namespace virtsnap::engine
