#include "commands.h"

#include "handlers.h"

namespace virtsnap::daemon {

namespace {

// An instance is a plain QEMU's monitor socket or a libvirt domain.
const std::vector<OptionSpec> kInstanceOptions = {{"qmp-socket"}, {"domain"}, {"connect"}};

const std::vector<OptionSpec> kCaptureOptions = {
	{"qmp-socket"}, {"domain"}, {"connect"}, {"qga-socket"}, {"quiesce"}, {"freeze-timeout"}, {"description"}, {"name"},
	{"tag", true, true}, {"wait", false}, {"client-token"},
};

std::vector<OptionSpec> with(std::vector<OptionSpec> base, const std::vector<OptionSpec> &more)
{
	base.insert(base.end(), more.begin(), more.end());
	return base;
}

const std::vector<std::string> kSnapshotColumns = {"SnapshotId", "VolumeId", "Disk", "State", "Progress",
						   "StartTime", "ConsistencyLevel", "BytesAdded", "Description"};

} // namespace

namespace {

// Every command on a store takes --account: root acts as any account with
// it, a user as one of theirs (access.h).
std::map<std::string, CommandSpec> withAccountOption(std::map<std::string, CommandSpec> table)
{
	for (auto &[name, spec] : table)
		if (spec.needsStore)
			spec.options.push_back({"account"});
	return table;
}

} // namespace

// One table, one entry a command, in one function: a reader finds every
// command and its options in one place, so it runs past a screen.
const std::map<std::string, CommandSpec> &commands()
{
	static const std::map<std::string, CommandSpec> table = withAccountOption({
		{"init",
		 {"create the store, and the key file if it is absent", {{"chunk-size"}, {"compression"}}, "", {}, initStore,
		  /*needsStore=*/false, /*cliOnly=*/true}},
		{"create-snapshot",
		 {"snapshot one disk of a QEMU instance or libvirt domain", with(kCaptureOptions, {{"disk"}}), "", {},
		  createSnapshot}},
		{"create-snapshots",
		 {"snapshot every disk of an instance at one point in time",
		  with(kCaptureOptions,
		       {{"exclude-boot-volume", false}, {"exclude-disk", true, true}, {"copy-tags-from-source", false}}),
		  "Snapshots", kSnapshotColumns, createSnapshots}},
		{"describe-snapshots",
		 {"list snapshots: all, the ones named, or those the filters match",
		  {{"snapshot-id", true, true},
		   {"filter", true, true},
		   {"owner-ids", true, true},
		   {"restorable-by-user-ids", true, true},
		   {"max-results"},
		   {"next-token"},
		   {"refresh", false}},
		  "Snapshots",
		  kSnapshotColumns, describeSnapshots}},
		{"copy-snapshot",
		 {"copy a completed snapshot, of this store or of another (--source-store), into this store, or out of "
		  "it into a store of the config file (--destination-store)",
		  {{"source-snapshot-id"}, {"source-store"}, {"source-key-file"}, {"destination-store"}, {"description"},
		   {"tag", true, true}, {"encrypted", false}, {"kms-key-id"},
		   {"client-token"}, {"wait", false}},
		  "", {}, copySnapshot}},
		{"delete-snapshot",
		 {"delete a snapshot (a pending one when it completes)", {{"snapshot-id"}}, "", {}, deleteSnapshot}},
		{"create-volume",
		 {"restore a snapshot into a new image file (a domain's disk: its latest snapshot by default; "
		  "--instant: at once, over the snapshot served by NBD, its data copied in afterwards)",
		  with(kInstanceOptions,
		       {{"snapshot-id"}, {"disk"}, {"target"}, {"format"}, {"instant", false}, {"node"}, {"speed"}, {"nbd-socket"},
			{"encryption-secret-file"}}),
		  "", {}, createVolume}},
		{"complete-instant-restore",
		 {"copy the rest of an instant restore's image into it (by the instance running on it, or offline), "
		  "then stop its export; also resumes a failed copy",
		  with(kInstanceOptions, {{"target"}, {"disk"}, {"node"}, {"speed"}, {"offline", false}}), "", {},
		  completeInstantRestore}},
		{"describe-instant-restores",
		 {"list instant restores: their state, export, and times and bytes read",
		  {{"target", true, true}}, "InstantRestores",
		  {"Target", "SnapshotId", "State", "ReadyMillis", "CopiedMillis", "BytesFromStore"},
		  describeInstantRestores}},
		{"restore-instance",
		 {"write one snapshot set back into the disks of a shut-off instance, all or nothing (or beside "
		  "them, into --target-dir; --instant: a libvirt domain started at once, its disks copied after)",
		  with(kInstanceOptions, {{"snapshot-set-id"}, {"target-dir"}, {"instant", false}, {"speed"}, {"encryption-secret-file"}}),
		  "Volumes", {"Disk", "SnapshotId", "Target", "Encrypted"},
		  restoreInstance}},
		{"list-snapshot-blocks",
		 {"list the 512 KiB blocks of a completed snapshot that hold data, with their tokens",
		  {{"snapshot-id"}, {"starting-block-index"}, {"max-results"}, {"next-token"}}, "Blocks",
		  {"BlockIndex", "BlockToken"}, listSnapshotBlocks}},
		{"list-changed-blocks",
		 {"list the 512 KiB blocks that differ between two snapshots of one volume",
		  {{"first-snapshot-id"}, {"second-snapshot-id"}, {"starting-block-index"}, {"max-results"}, {"next-token"}},
		  "ChangedBlocks", {"BlockIndex", "FirstBlockToken", "SecondBlockToken"}, listChangedBlocks}},
		{"get-snapshot-block",
		 {"write one 512 KiB block of a snapshot to a file, given its token from a listing",
		  {{"snapshot-id"}, {"block-index"}, {"block-token"}, {"output-file"}}, "", {}, getSnapshotBlock}},
		{"serve-snapshot",
		 {"serve a completed snapshot over NBD with nbdkit, in the background (read-only, or --writable "
		  "through a copy-on-write overlay)",
		  {{"snapshot-id"}, {"nbd-socket"}, {"port"}, {"bind"}, {"writable", false}}, "", {}, serveSnapshot}},
		{"describe-exports",
		 {"list the snapshots served over NBD (exports whose nbdkit died: once, as gone)",
		  {{"export-id", true, true}}, "Exports", {"ExportId", "SnapshotId", "State", "Uri", "Writable", "Host"},
		  describeExports}},
		{"stop-serving",
		 {"stop an NBD export and remove its overlay", {{"export-id"}}, "", {}, stopServing}},
		{"lock-snapshot",
		 {"lock a completed snapshot against deletion (governance or compliance mode), or change its lock",
		  {{"snapshot-id"}, {"lock-mode"}, {"lock-duration"}, {"expiration-date"}, {"cool-off-period"}}, "", {},
		  lockSnapshot}},
		{"unlock-snapshot",
		 {"remove a governance lock, or a compliance lock in its cool-off period", {{"snapshot-id"}}, "", {},
		  unlockSnapshot}},
		{"describe-locked-snapshots",
		 {"list snapshot locks: all, the snapshots named, or those in the lock states filtered",
		  {{"snapshot-id", true, true}, {"filter", true, true}}, "Snapshots",
		  {"SnapshotId", "LockState", "LockExpiresOn", "CoolOffPeriodExpiresOn"}, describeLockedSnapshots}},
		{"create-rule",
		 {"create a Recycle Bin retention rule: snapshots it matches go into the bin when deleted",
		  {{"resource-type"}, {"retention-period"}, {"resource-tags", true, true}, {"description"}}, "", {},
		  createRule}},
		{"list-rules",
		 {"list the Recycle Bin's retention rules", {{"resource-type"}, {"lock-state"}}, "Rules",
		  {"Identifier", "RetentionPeriod", "LockState", "Description"}, listRules}},
		{"get-rule", {"show one retention rule", {{"identifier"}}, "", {}, getRule}},
		{"update-rule",
		 {"change a retention rule (a locked one: only longer retention or its description)",
		  {{"identifier"}, {"retention-period"}, {"resource-tags", true, true}, {"description"}}, "", {},
		  updateRule}},
		{"delete-rule", {"delete an unlocked retention rule", {{"identifier"}}, "", {}, deleteRule}},
		{"lock-rule",
		 {"lock a retention rule for every snapshot against deletion and weakening",
		  {{"identifier"}, {"lock-configuration"}}, "", {}, lockRule}},
		{"unlock-rule",
		 {"start a locked rule's unlock delay, after which it is unlocked", {{"identifier"}}, "", {},
		  unlockRule}},
		{"list-snapshots-in-recycle-bin",
		 {"list the deleted snapshots the Recycle Bin holds", {{"snapshot-id", true, true}}, "Snapshots",
		  {"SnapshotId", "RecycleBinEnterTime", "RecycleBinExitTime", "VolumeId"}, listSnapshotsInRecycleBin}},
		{"restore-snapshot-from-recycle-bin",
		 {"bring a snapshot back from the Recycle Bin, whole", {{"snapshot-id"}}, "", {},
		  restoreSnapshotFromRecycleBin}},
		{"start-snapshot",
		 {"begin a snapshot from outside data, written block by block (pending until completed)",
		  {{"volume-size"}, {"parent-snapshot-id"}, {"description"}, {"tag", true, true}, {"client-token"}, {"timeout"},
		   {"encrypted", false}, {"kms-key-id"}},
		  "", {}, startSnapshot}},
		{"put-snapshot-block",
		 {"write one 512 KiB block from a file into a pending snapshot, once its SHA-256 checks out",
		  {{"snapshot-id"}, {"block-index"}, {"block-data"}, {"data-length"}, {"checksum"}, {"checksum-algorithm"}},
		  "", {}, putSnapshotBlock}},
		{"complete-snapshot",
		 {"seal a snapshot begun with start-snapshot (its parent's blocks with the put ones over them)",
		  {{"snapshot-id"}, {"changed-blocks-count"}, {"checksum"}, {"checksum-algorithm"},
		   {"checksum-aggregation-method"}},
		  "", {}, completeSnapshot}},
		{"import-image",
		 {"make a snapshot of a raw or qcow2 image file, block by block",
		  {{"file"}, {"format"}, {"description"}, {"tag", true, true}}, "", {}, importImage}},
		{"create-tags",
		 {"add or overwrite tags of a snap- or vol- id", {{"resource"}, {"tag", true, true}}, "", {}, createTags}},
		{"delete-tags",
		 {"remove tags (KEY or KEY=VALUE) of a snap- or vol- id", {{"resource"}, {"tag", true, true}}, "", {},
		  deleteTags}},
		{"register-instance",
		 {"record attributes of an instance (each call sets them all)",
		  with(kInstanceOptions, {{"hibernation-enabled"}, {"product-code", true, true}}), "", {},
		  registerInstance}},
		{"describe-volumes",
		 {"list known volumes, or the disks of an instance (registered on first sight)",
		  with(kInstanceOptions, {{"volume-id", true, true}}), "Volumes",
		  {"VolumeId", "Instance", "Disk", "Size", "VolumeClass", "Encrypted", "Tags"}, describeVolumes}},
		{"modify-volume",
		 {"set a volume's class (st1 and sc1 allow one pending snapshot), or mark it encrypted",
		  {{"volume-id"}, {"volume-class"}, {"encrypted"}, {"kms-key-id"}}, "", {}, modifyVolume}},
		{"verify",
		 {"re-read, decrypt and re-hash what snapshots reference (all by default)", {{"snapshot-id", true, true}},
		  "Snapshots", {"SnapshotId", "Status", "Problems"}, verify}},
		{"gc",
		 {"reclaim space no snapshot references", {{"grace-seconds"}, {"dry-run", false}}, "", {},
		  collectGarbage}},
		{"catalog-rebuild", {"rebuild the catalog from the store's manifests", {}, "", {}, rebuildCatalog}},
		{"wait-snapshot-completed",
		 {"wait until the snapshots are completed (fails if one ends in error)",
		  {{"snapshot-id", true, true}, {"timeout"}}, "Snapshots", kSnapshotColumns, waitSnapshotCompleted}},
		{"create-lifecycle-policy",
		 {"create a lifecycle policy (DLM's PolicyDetails: JSON, or file://PATH)",
		  {{"description"}, {"state"}, {"policy-details"}}, "", {}, createLifecyclePolicy}},
		{"get-lifecycle-policies",
		 {"list lifecycle policies: all, the ones named, or those of a state or target tag",
		  {{"policy-ids", true, true}, {"state"}, {"target-tags", true, true}}, "Policies",
		  {"PolicyId", "State", "Description"}, getLifecyclePolicies}},
		{"get-lifecycle-policy",
		 {"show a lifecycle policy, with its schedules' last, next and recent runs", {{"policy-id"}}, "", {},
		  getLifecyclePolicy}},
		{"update-lifecycle-policy",
		 {"change a lifecycle policy's description, state or details",
		  {{"policy-id"}, {"description"}, {"state"}, {"policy-details"}}, "", {}, updateLifecyclePolicy}},
		{"delete-lifecycle-policy",
		 {"delete a lifecycle policy (its snapshots stay)", {{"policy-id"}}, "", {}, deleteLifecyclePolicy}},
		{"run-lifecycle-policy",
		 {"run a lifecycle policy's schedules (or one) now: snapshots, then retention",
		  {{"policy-id"}, {"schedule"}}, "Runs", {"ScheduleName", "Outcome", "StartTime", "Message"},
		  runLifecyclePolicy}},
		{"libvirt-hook",
		 {"what the libvirt hook hands virtsnapd (hooks/): one event of a domain",
		  {{"domain"}, {"uuid"}, {"operation"}, {"sub-operation"}}, "", {}, libvirtHook}},
		{"create-account",
		 {"add an account to the store (root only); writes its key file when absent",
		  {{"account-id"}, {"account-key-file"}}, "", {}, createAccount}},
		{"describe-accounts",
		 {"list the store's accounts, and which users and groups act as each here", {}, "Accounts",
		  {"AccountId", "Default", "Users", "Groups"}, describeAccounts}},
		{"create-key",
		 {"create a KMS-style key (a key domain of the store) owned by the account", {{"description"}}, "", {},
		  createKey}},
		{"describe-keys",
		 {"list the keys the account owns and those granted to it", {{"key-id", true, true}}, "Keys",
		  {"KeyId", "AWSAccountId", "KeyManager", "KeyState", "Description"}, describeKeys}},
		{"create-grant",
		 {"let another account use a key of this account (read snapshots sealed under it, copy them)",
		  {{"key-id"}, {"grantee-account"}}, "", {}, createGrant}},
		{"modify-snapshot-attribute",
		 {"share a completed snapshot with accounts or make it public (createVolumePermission), or take that back",
		  {{"snapshot-id"}, {"attribute"}, {"operation-type"}, {"user-ids", true, true}, {"group-names", true, true}},
		  "", {}, modifySnapshotAttribute}},
		{"describe-snapshot-attribute",
		 {"show who may create volumes from a snapshot (createVolumePermission)", {{"snapshot-id"}, {"attribute"}},
		  "CreateVolumePermissions", {"UserId", "Group"}, describeSnapshotAttribute}},
		{"reset-snapshot-attribute",
		 {"share a snapshot with nobody again (createVolumePermission)", {{"snapshot-id"}, {"attribute"}}, "", {},
		  resetSnapshotAttribute}},
	});
	return table;
}

const CommandSpec *findCommand(const std::string &name)
{
	auto it = commands().find(name);
	return it == commands().end() ? nullptr : &it->second;
}

} // namespace virtsnap::daemon
