// Which account acts, and what it may see (engine/accounts.h). Every
// command that names a snapshot asks here: an account sees its own
// snapshots, those shared with it and public ones; for anything else a
// snapshot "does not exist" (InvalidSnapshot.NotFound), as on EC2. Only the
// owner changes or deletes one.
#pragma once

#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "context.h"
#include "engine/resources.h"

namespace virtsnap::daemon {

// The account a caller acts as (ARCHITECTURE.md, "Accounts"):
//  - root (and the daemon's own runs, uid ""): the default account, or
//    `requested` (--account) when given;
//  - another user: the first [account] section naming them in users, else
//    the first naming one of their groups in groups; --account picks among
//    the sections that name them. With no [account] sections at all, every
//    user acts as the default account (stores from before accounts keep
//    working). A user in no account is refused (AccessDenied).
Result<std::string> actingAccount(const Context &ctx, const std::string &uid, const std::string &requested);

// An empty owner (a manifest from before accounts) is the default account.
std::string ownerOf(const Context &ctx, const catalog::SnapshotRow &row);

// The snapshot's row when `call`'s account may see it; NotFound otherwise.
Result<catalog::SnapshotRow> visibleSnapshot(Context &ctx, const Call &call, const std::string &snapshotId);
// The same, and AccessDenied when the account sees it but does not own it.
Result<catalog::SnapshotRow> ownedSnapshot(Context &ctx, const Call &call, const std::string &snapshotId);
// Only a completed snapshot may be `used` ("copied", "served"): EBS
// answers IncorrectState for a pending or failed one.
Result<void> requireCompleted(const catalog::SnapshotRow &row, const std::string &used);
// The same for a snapshot this host's catalog may not know: its pending and
// failed ones are there (they have no manifest), another host's completed
// one is in the store alone.
Result<void> requireCompletedIfKnown(Context &ctx, const std::string &snapshotId, const std::string &used);
// Every read of an encrypted snapshot needs its key (engine/kms_keys.h):
// the account owns it or was granted it, else AccessDenied naming the key,
// as KMS refuses kms:Decrypt.
Result<void> requireSnapshotKey(Context &ctx, const Call &call, const catalog::SnapshotRow &row);
// Snapshotting or re-keying an encrypted volume needs its current key
// (volumes have no owner: the key decides who reads their snapshots), as
// EBS refuses CreateSnapshot without KMS permission: AccessDenied naming
// the key. A volume with no key yet needs none.
Result<void> requireVolumeKey(Context &ctx, const std::string &accountId, const engine::VolumeRecord &v);
// An encrypted snapshot restores only for its owner: an account it is
// shared with copies it into a key of its own first, as on EBS
// (AccessDenied naming the key without a grant, else naming the copy).
Result<void> refuseSharedEncrypted(Context &ctx, const Call &call, const catalog::SnapshotRow &row);
// Whether `accountId` may see the snapshot (owner, shared, public).
Result<bool> maySee(Context &ctx, const std::string &accountId, const catalog::SnapshotRow &row);

// describe-snapshots' scope for `accountId`: its own snapshots or those its
// permissions name.
Result<catalog::Scope> scopeOf(Context &ctx, const std::vector<std::string> &accountIds);

} // namespace virtsnap::daemon
