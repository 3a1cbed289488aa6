// Writes one snapshot set back over the disks of the shut-off instance it
// was taken of, all or nothing: each image is restored beside itself,
// taking the owner and mode of the one it replaces, and only once all are
// complete and durable does one journal (restore_journal.h) swap them in.
// A failure before that leaves every disk of the instance as it was.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "luks_settings.h"
#include "snapshot_engine.h"

namespace virtsnap::engine {

// A snapshot of the set, as the catalog knows it.
struct SetSnapshot {
	std::string snapshotId, volumeId, diskId, instanceName;
	SnapshotState state = SnapshotState::Completed;
	bool encrypted = false; // of an encrypted volume
};

struct InstanceRestorePlan {
	std::string setId;
	std::string instanceKey, instanceName, described;
	// The set goes into new files here instead of over the instance's
	// images; "": over them.
	std::filesystem::path targetDir;
	struct Disk {
		std::string diskId, snapshotId, format;
		std::filesystem::path image;
		// The disk's image is encrypted: so is its replacement, with
		// the passphrase findPassphrases() puts here.
		bool encrypted = false;
		std::string encryptionSecret; // the hypervisor's reference to it
		std::optional<LuksSettings> luks;
	};
	std::vector<Disk> disks;
	// As RestoreRequest's: how long a qcow2's qemu-nbd may not answer.
	std::chrono::milliseconds answerTimeout = hypervisor::kDefaultMonitorTimeout;
};

// Checks, before anything is written, that the instance is shut off, that
// the set has snapshots, and that every one is completed and finds its disk
// there, in a format restore writes (qcow2, raw). With a `targetDir`, the
// instance may run: each disk goes to targetDir/DISK.FORMAT, which must not
// exist yet, and the instance is left alone.
Result<InstanceRestorePlan> planInstanceRestore(hypervisor::Driver &driver, const std::string &setId,
						const std::vector<SetSnapshot> &set,
						const std::filesystem::path &targetDir = {});
// Each encrypted disk keeps its encryption: its passphrase from the
// hypervisor (libvirt's secret of the disk), else `given`
// (--encryption-secret-file); neither is InvalidParameterValue.
Result<void> findPassphrases(hypervisor::Driver &driver, InstanceRestorePlan &plan,
			     const std::optional<LuksSettings> &given, std::chrono::milliseconds iterTime);
// The journal goes into `journalDir` (restoreJournalDir() of the host's
// state directory). `warn`: as RestoreRequest's.
Result<void> restoreInstance(store::Store &store, hypervisor::Driver &driver, const InstanceRestorePlan &plan,
			     const std::filesystem::path &journalDir, const ProgressFn &progress,
			     const std::function<void(const std::string &)> &warn = nullptr);

} // namespace virtsnap::engine
