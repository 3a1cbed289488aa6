#include "restore_instance.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "crypto/resource_ids.h"
#include "restore.h"
#include "restore_journal.h"

namespace virtsnap::engine {

Result<InstanceRestorePlan> planInstanceRestore(hypervisor::Driver &driver, const std::string &setId,
						const std::vector<SetSnapshot> &set, const std::filesystem::path &targetDir)
{
	VS_ASSIGN(hypervisor::InstanceInfo instance, driver.instance());
	if (targetDir.empty() && instance.status != "shut off")
		return fail(errc::kIncorrectState,
			    driver.describe() + " is " + instance.status +
				    "; restore-instance writes its disks only while it is shut off (--target-dir DIR "
				    "writes the set beside them instead)");
	if (!targetDir.empty() && !std::filesystem::is_directory(targetDir))
		return fail(errc::kInvalidParameterValue, "--target-dir " + targetDir.string() + " is not a directory");
	VS_ASSIGN(std::vector<hypervisor::DiskInfo> disks, driver.configuredDisks());
	InstanceRestorePlan plan{setId, instance.key, instance.name, driver.describe(), targetDir, {}};
	if (set.empty())
		return fail(errc::kSnapshotNotFound, "no snapshot set '" + setId + "' is known here");
	for (const SetSnapshot &s : set) {
		if (s.state != SnapshotState::Completed)
			return fail(errc::kIncorrectState, "snapshot " + s.snapshotId + " of " + setId + " is " + name(s.state));
		if (volumeIdFor(instance.key, s.diskId) != s.volumeId)
			return fail(errc::kInvalidParameterValue, setId + " was taken of another instance (" +
									  s.instanceName + "), not of " + plan.described);
		auto d = std::find_if(disks.begin(), disks.end(),
				      [&](const hypervisor::DiskInfo &x) { return x.diskId == s.diskId; });
		if (d == disks.end())
			return fail(errc::kDiskNotFound, plan.described + " has no disk " + s.diskId + " any more");
		if (d->format != "qcow2" && d->format != "raw")
			return fail(errc::kInvalidParameterValue,
				    "disk " + s.diskId + " is " + d->format + "; restore-instance writes qcow2 and raw images");
		std::filesystem::path image = d->filename;
		if (!targetDir.empty()) {
			image = targetDir / (s.diskId + "." + d->format);
			if (std::filesystem::exists(image))
				return fail(errc::kTargetExists, image.string() + " already exists");
		}
		if (d->encrypted && d->format != "qcow2")
			return fail(errc::kInvalidParameterValue, "disk " + s.diskId + " is an encrypted " + d->format +
									  " image; restore-instance writes encrypted disks "
									  "as LUKS qcow2 only");
		if (s.encrypted && !d->encrypted)
			return fail(errc::kInvalidParameterValue,
				    "disk " + s.diskId + " is not encrypted, but " + s.snapshotId +
					    " is of an encrypted volume: restore-instance keeps each disk's "
					    "encryption (create-volume writes it encrypted elsewhere)");
		plan.disks.push_back({s.diskId, s.snapshotId, d->format, image, d->encrypted, d->encryptionSecret, {}});
	}
	return plan;
}

Result<void> findPassphrases(hypervisor::Driver &driver, InstanceRestorePlan &plan,
			     const std::optional<LuksSettings> &given, std::chrono::milliseconds iterTime)
{
	for (InstanceRestorePlan::Disk &d : plan.disks) {
		if (!d.encrypted)
			continue;
		hypervisor::DiskInfo info;
		info.diskId = d.diskId;
		info.encryptionSecret = d.encryptionSecret;
		VS_ASSIGN(auto known, driver.diskPassphrase(info));
		if (known)
			d.luks = LuksSettings{std::move(*known), iterTime};
		else if (given)
			d.luks = given;
		else
			return fail(errc::kInvalidParameterValue,
				    "disk " + d.diskId + " of " + plan.described +
					    " is encrypted and its passphrase is not readable from the hypervisor (a "
					    "private libvirt secret?): give --encryption-secret-file FILE");
	}
	return {};
}

namespace {

// The restored image takes the owner and mode of the one it replaces, or
// it does not replace it.
Result<void> takeOwnerAndMode(const TempFile &restored, const std::filesystem::path &image)
{
	struct stat st {};
	if (::stat(image.c_str(), &st) != 0)
		return {}; // nothing to take after: the image is gone
	if (::fchown(restored.fd(), st.st_uid, st.st_gid) != 0 || ::fchmod(restored.fd(), st.st_mode & 07777) != 0)
		return failErrno("give the restored " + image.string() + " its owner and mode", errno);
	return {};
}

} // namespace

Result<void> restoreInstance(store::Store &store, hypervisor::Driver &driver, const InstanceRestorePlan &plan,
			     const std::filesystem::path &journalDir, const ProgressFn &progress,
			     const std::function<void(const std::string &)> &warn)
{
	// Every disk complete and durable beside its image before any image
	// changes: dropped on a failure, they leave every original as it was.
	std::vector<TempFile> restored;
	std::vector<ImageSwap> swaps;
	for (const InstanceRestorePlan::Disk &d : plan.disks) {
		auto written = writeVolumeFile(
			store, {d.snapshotId, d.image, d.format, progress, "", d.luks, warn, plan.answerTimeout});
		if (!written)
			return fail(written.error().code, "disk " + d.diskId + ": " + written.error().message);
		VS_TRY(takeOwnerAndMode(written->file, d.image));
		VS_TRY(written->file.sync());
		swaps.push_back({written->file.tempPath(), d.image});
		restored.push_back(std::move(written->file));
	}
	VS_ASSIGN(std::filesystem::path journal, writeRestoreJournal(journalDir, plan.setId, swaps));
	for (TempFile &t : restored)
		t.keep();
	auto finished = finishRestoreJournal(journal);
	// The new images hold no bitmaps: whatever the hypervisor kept about
	// the old ones is stale, and the next snapshot of each disk reads it
	// in full.
	if (plan.targetDir.empty())
		driver.imagesReplaced();
	if (!finished)
		return fail(finished.error().code, "the set is restored but not all of it is in place yet (" +
							   finished.error().message +
							   "); virtsnapd puts the rest in place when it next starts");
	return {};
}

} // namespace virtsnap::engine
