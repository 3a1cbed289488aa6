// The command handlers, grouped by area in the files named below; the
// dispatch table (commands.cc) maps each command to one of them.
#pragma once

#include "admission.h"
#include "catalog/catalog.h"
#include "core/unique_fd.h"
#include "context.h"
#include "engine/restore_instance.h"
#include "engine/luks_settings.h"
#include "store/chunk_id.h"

namespace virtsnap::daemon {

// create_snapshots.cc
Result<Reply> createSnapshot(Context &ctx, const Call &call);
Result<Reply> createSnapshots(Context &ctx, const Call &call);
// The request an idempotent command's client token was first used for
// (nullopt: a new token, or none); IdempotentParameterMismatch when it was
// used with other parameters.
Result<std::optional<catalog::RequestRow>> earlierRequest(Context &ctx, const std::string &clientToken,
							  const std::string &requestHash);
// The pending limits per volume that creates and copies count against.
Admission::Limits pendingLimits(Context &ctx);

// account_commands.cc
Result<Reply> createAccount(Context &ctx, const Call &call);
Result<Reply> describeAccounts(Context &ctx, const Call &call);
Result<Reply> createKey(Context &ctx, const Call &call);
Result<Reply> describeKeys(Context &ctx, const Call &call);
Result<Reply> createGrant(Context &ctx, const Call &call);

// sharing_commands.cc
Result<Reply> modifySnapshotAttribute(Context &ctx, const Call &call);
Result<Reply> describeSnapshotAttribute(Context &ctx, const Call &call);
Result<Reply> resetSnapshotAttribute(Context &ctx, const Call &call);

// copy_commands.cc
Result<Reply> copySnapshot(Context &ctx, const Call &call);

// snapshot_commands.cc
Result<Reply> describeSnapshots(Context &ctx, const Call &call);
Result<Reply> deleteSnapshot(Context &ctx, const Call &call);
Result<Reply> waitSnapshotCompleted(Context &ctx, const Call &call);

// volume_commands.cc
Result<Reply> createVolume(Context &ctx, const Call &call);
Result<Reply> createTags(Context &ctx, const Call &call);
Result<Reply> deleteTags(Context &ctx, const Call &call);
Result<Reply> registerInstance(Context &ctx, const Call &call);
Result<Reply> describeVolumes(Context &ctx, const Call &call);
Result<Reply> modifyVolume(Context &ctx, const Call &call);

// instant_commands.cc
// create-volume --instant (createVolume hands it on).
Result<Reply> createVolumeInstant(Context &ctx, const Call &call);
Result<Reply> completeInstantRestore(Context &ctx, const Call &call);
Result<Reply> describeInstantRestores(Context &ctx, const Call &call);
// restore-instance --instant (restoreInstance hands it on).
Result<Reply> restoreInstanceInstant(Context &ctx, const Call &call);

// restore_commands.cc
Result<Reply> restoreInstance(Context &ctx, const Call &call);
// The snapshots of a set, as the catalog knows them, that the caller's
// account may see (access.h).
Result<std::vector<engine::SetSnapshot>> snapshotsOfSet(Context &ctx, const Call &call, const std::string &setId);

// block_commands.cc
Result<Reply> listSnapshotBlocks(Context &ctx, const Call &call);
Result<Reply> listChangedBlocks(Context &ctx, const Call &call);
Result<Reply> getSnapshotBlock(Context &ctx, const Call &call);

// lock_commands.cc
Result<Reply> lockSnapshot(Context &ctx, const Call &call);
Result<Reply> unlockSnapshot(Context &ctx, const Call &call);
Result<Reply> describeLockedSnapshots(Context &ctx, const Call &call);

// export_commands.cc
Result<Reply> serveSnapshot(Context &ctx, const Call &call);
Result<Reply> describeExports(Context &ctx, const Call &call);
Result<Reply> stopServing(Context &ctx, const Call &call);

// recycle_bin_commands.cc
Result<Reply> createRule(Context &ctx, const Call &call);
Result<Reply> listRules(Context &ctx, const Call &call);
Result<Reply> getRule(Context &ctx, const Call &call);
Result<Reply> updateRule(Context &ctx, const Call &call);
Result<Reply> deleteRule(Context &ctx, const Call &call);
Result<Reply> lockRule(Context &ctx, const Call &call);
Result<Reply> unlockRule(Context &ctx, const Call &call);
Result<Reply> listSnapshotsInRecycleBin(Context &ctx, const Call &call);
Result<Reply> restoreSnapshotFromRecycleBin(Context &ctx, const Call &call);
// block_write_commands.cc
Result<Reply> startSnapshot(Context &ctx, const Call &call);
Result<Reply> putSnapshotBlock(Context &ctx, const Call &call);
Result<Reply> completeSnapshot(Context &ctx, const Call &call);
Result<Reply> importImage(Context &ctx, const Call &call);
// A file the caller names (`option`), opened as the caller (core/acting_as.h):
// the daemon reads for them only what they could read themselves.
Result<UniqueFd> openAsCaller(const std::string &option, const std::string &path, const std::string &ownerId);
// --encryption-secret-file, read as the caller: a regular file of mode
// 0600 (or stricter) owned by the caller or root, 1 to 4096 bytes, taken
// whole as the LUKS passphrase. Nothing when the option is absent.
Result<std::optional<engine::LuksSettings>> encryptionSecret(Context &ctx, const Call &call);
// The volume a snapshot was restored into gets its product codes, in the
// store and the catalog (engine::giveVolumeProductCodes), when the caller
// owns the snapshot. Best effort: it comes after the data is in place,
// which a failure here must not report as failed; it warns on stderr.
void restoredVolumeProductCodes(Context &ctx, const Call &call, const store::Manifest &m);
// One warning line on the stderr of the process that does the work (the
// daemon's journal): what a restore or describe went on without.
void warnOnStderr(const std::string &message);
// Block writes whose timeout passed go to error, their rows too: what
// describe-snapshots and gc do first.
void expireBlockWrites(Context &ctx);
// delete-snapshot of a block write that ended in error: what this host kept
// of it goes, so that no catalog rebuild shows it again.
Result<void> forgetBlockWrite(Context &ctx, const std::string &snapshotId);
// The rows of this host's block writes, pending or failed: no manifest
// names them, so a catalog rebuild takes them from here.
Result<std::vector<catalog::SnapshotRow>> blockWriteRows(Context &ctx);
// The chunks this host's pending block writes hold: gc's GcOptions::pinned.
Result<std::vector<store::ChunkId>> blockWritesPinned(Context &ctx);

// maintenance_commands.cc
Result<Reply> initStore(Context &ctx, const Call &call);
Result<Reply> verify(Context &ctx, const Call &call);
Result<Reply> collectGarbage(Context &ctx, const Call &call);
Result<Reply> rebuildCatalog(Context &ctx, const Call &call);

// policy_commands.cc
Result<Reply> createLifecyclePolicy(Context &ctx, const Call &call);
Result<Reply> getLifecyclePolicies(Context &ctx, const Call &call);
Result<Reply> getLifecyclePolicy(Context &ctx, const Call &call);
Result<Reply> updateLifecyclePolicy(Context &ctx, const Call &call);
Result<Reply> deleteLifecyclePolicy(Context &ctx, const Call &call);
// policy_run.cc
Result<Reply> runLifecyclePolicy(Context &ctx, const Call &call);

// hook_commands.cc
Result<Reply> libvirtHook(Context &ctx, const Call &call);

} // namespace virtsnap::daemon
