// Restores a snapshot into a new volume file, alone: it needs no other
// snapshot, only the chunks its own index names.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "core/file_util.h"
#include "hypervisor/capture.h"
#include "luks_settings.h"
#include "snapshot_engine.h"

namespace virtsnap::engine {

struct RestoreRequest {
	std::string snapshotId;
	std::filesystem::path target; // must not exist
	std::string format = "qcow2"; // "qcow2" | "raw"
	ProgressFn progress;
	// Whose new file it is (a uid as text; empty: ours). The target's
	// directory is looked at and written as this user (core/acting_as.h),
	// the store is read as ourselves.
	std::string writeAs;
	// Write a LUKS qcow2 with this passphrase. Required for a snapshot of
	// an encrypted volume (else InvalidParameterValue), allowed for any.
	std::optional<LuksSettings> luks = std::nullopt;
	// Told when the new file cannot keep the snapshot's product codes
	// (image_product_codes.h); the restore goes on.
	std::function<void(const std::string &)> warn = nullptr;
	// How long qemu-nbd, writing a qcow2, may leave a request unanswered
	// before the restore gives up on it ([hypervisor] timeout).
	std::chrono::milliseconds answerTimeout = hypervisor::kDefaultMonitorTimeout;
};

// Writes the volume under a temporary name and renames it into place only
// when complete: a failed restore leaves no target behind.
Result<store::Manifest> createVolume(store::Store &store, const RestoreRequest &request);

// A snapshot's volume, complete under a temporary name beside its final
// path and marked with the snapshot's product codes: the caller's commit() makes it durable and puts it in place (over
// an existing file, if it says so); dropped, it is removed.
struct WrittenVolume {
	TempFile file;
	store::Manifest manifest;
};
Result<WrittenVolume> writeVolumeFile(store::Store &store, const RestoreRequest &request);

} // namespace virtsnap::engine
