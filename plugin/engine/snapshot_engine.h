// Takes snapshots: decides full or incremental, fixes the point in time
// through a hypervisor driver, streams what changed into the store, and
// commits in the order FORMAT.md prescribes.
#pragma once

#include <functional>
#include <string>

#include "store/manifest.h"
#include "store/store.h"

namespace virtsnap::engine {

using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct SnapshotRequest {
	std::string qmpSocket;
	std::string diskId;
	std::string description;
	store::Tags tags;
	ProgressFn progress;
};

Result<store::Manifest> createSnapshot(store::Store &store, const SnapshotRequest &request);

Result<void> deleteSnapshot(store::Store &store, const std::string &snapshotId);

} // namespace virtsnap::engine
