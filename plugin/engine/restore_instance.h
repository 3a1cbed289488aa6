// Writes one snapshot set back over the disks of the shut-off instance it
// was taken of. Each image is restored beside itself and renamed over it,
// taking the owner and mode of the one it replaces: a failure leaves the
// instance's disks as they were, the ones done excepted.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "snapshot_engine.h"

namespace virtsnap::engine {

// A snapshot of the set, as the catalog knows it.
struct SetSnapshot {
	std::string snapshotId, volumeId, diskId, instanceName;
	SnapshotState state = SnapshotState::Completed;
};

struct InstanceRestorePlan {
	std::string setId;
	std::string instanceKey, instanceName, described;
	struct Disk {
		std::string diskId, snapshotId, format;
		std::filesystem::path image;
	};
	std::vector<Disk> disks;
};

// Checks, before anything is written, that the instance is shut off, that
// the set has snapshots, and that every one is completed and finds its disk
// there, in a format restore writes (qcow2, raw).
Result<InstanceRestorePlan> planInstanceRestore(hypervisor::Driver &driver, const std::string &setId,
						const std::vector<SetSnapshot> &set);
Result<void> restoreInstance(store::Store &store, hypervisor::Driver &driver, const InstanceRestorePlan &plan,
			     const ProgressFn &progress);

} // namespace virtsnap::engine
