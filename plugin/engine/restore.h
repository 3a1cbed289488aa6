// Restores a snapshot into a new volume file, alone: it needs no other
// snapshot, only the chunks its own index names.
#pragma once

#include <filesystem>
#include <string>

#include "snapshot_engine.h"

namespace virtsnap::engine {

struct RestoreRequest {
	std::string snapshotId;
	std::filesystem::path target; // must not exist
	std::string format = "qcow2"; // "qcow2" | "raw"
	ProgressFn progress;
};

// Writes the volume under a temporary name and renames it into place only
// when complete: a failed restore leaves no target behind.
Result<store::Manifest> createVolume(store::Store &store, const RestoreRequest &request);

} // namespace virtsnap::engine
