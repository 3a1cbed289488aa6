// Takes snapshots: picks the disks, decides full or incremental per disk,
// fixes one point in time for all of them through a hypervisor driver (with
// the guest frozen around it when asked), streams what changed into the
// store, and commits in the order FORMAT.md prescribes. A single-disk
// snapshot is a set of one.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "hypervisor/guest_agent_quiescer.h"
#include "store/manifest.h"
#include "store/store.h"

namespace virtsnap::engine {

// Called from worker threads; must be thread-safe.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

inline constexpr size_t kMaxSetDisks = 40;

struct SnapshotSetRequest {
	std::string qmpSocket;
	std::string qgaSocket;                 // "" = no guest agent
	std::vector<std::string> disks;        // the disks; empty = every disk of the instance
	std::vector<std::string> excludeDisks;
	bool excludeBootVolume = false;
	bool copyTagsFromSource = false;
	hypervisor::QuiesceMode quiesce = hypervisor::QuiesceMode::Off;
	std::chrono::milliseconds freezeTimeout{10000};
	std::string description;
	std::string name;
	store::Tags tags;
	ProgressFn progress;
	std::function<void(const std::string &)> warn;
};

struct SnapshotOutcome {
	store::Manifest manifest;   // complete when state is "completed"
	std::string state;          // "completed" | "error"
	std::string stateMessage;
};

// Errors before any snapshot exists (no instance, unknown disk, nothing
// left after exclusions, a hibernated instance, a required freeze that
// failed) come back as an Error and change nothing. Once the point in time
// is taken, every disk gets an outcome, and if any disk failed, all of them
// are "error", no manifest of the set stays, and no new bitmap is left.
Result<std::vector<SnapshotOutcome>> createSnapshots(store::Store &store, const SnapshotSetRequest &request);

Result<void> deleteSnapshot(store::Store &store, const std::string &snapshotId);

} // namespace virtsnap::engine
