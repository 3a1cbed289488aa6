// restore-instance: the daemon's part is finding the set and keeping the
// domain from starting meanwhile; the engine writes the disks.
#include <unistd.h>

#include <filesystem>

#include "access.h"
#include "admission.h"
#include "catalog/catalog.h"
#include "driver_cache.h"
#include "engine/restore_instance.h"
#include "engine/restore_journal.h"
#include "handlers.h"
#include "requests.h"
#include "store/store.h"

namespace virtsnap::daemon {

Result<std::vector<engine::SetSnapshot>> snapshotsOfSet(Context &ctx, const Call &call, const std::string &setId)
{
	VS_ASSIGN(catalog::Scope scope, scopeOf(ctx, {call.accountId}));
	VS_ASSIGN(catalog::Page page, ctx.catalog->describeSnapshots({}, {}, 0, "", {scope}));
	std::vector<engine::SetSnapshot> set;
	for (const catalog::SnapshotRow &r : page.snapshots)
		if (r.snapshotSetId == setId) {
			VS_TRY(refuseSharedEncrypted(ctx, call, r));
			set.push_back({r.snapshotId, r.volumeId, r.diskId, r.instanceName, r.state, r.encrypted});
		}
	return set;
}

Result<Reply> restoreInstance(Context &ctx, const Call &call)
{
	if (call.args.has("instant"))
		return restoreInstanceInstant(ctx, call);
	if (call.args.has("speed"))
		return fail(errc::kInvalidParameterValue, "--speed goes with --instant");
	VS_ASSIGN(std::string setId, call.args.require("snapshot-set-id"));
	VS_ASSIGN(hypervisor::Target target, parseTarget(call.args, ctx.options.libvirtUri));
	std::filesystem::path targetDir = call.args.get("target-dir");
	// New files anywhere, written by root: only root may ask that of the
	// daemon (a group member runs it in process, as itself).
	if (!targetDir.empty() && ::geteuid() == 0 && call.uid != "0")
		return fail(errc::kAccessDenied, "restore-instance --target-dir through virtsnapd is for root; run it "
						 "as yourself without the daemon (--socket to a path where none listens)");
	VS_ASSIGN(auto driver, ctx.drivers->get(target));
	VS_ASSIGN(auto set, snapshotsOfSet(ctx, call, setId));
	VS_ASSIGN(engine::InstanceRestorePlan plan, engine::planInstanceRestore(*driver, setId, set, targetDir));
	VS_ASSIGN(auto given, encryptionSecret(ctx, call));
	VS_TRY(engine::findPassphrases(*driver, plan, given, ctx.options.luksIterTime));
	plan.answerTimeout = ctx.options.hypervisorTimeout;

	// While its disks are written, the hook refuses to start the domain.
	const bool replacing = targetDir.empty();
	if (replacing)
		VS_TRY(ctx.admission->beginRestore(plan.instanceKey, plan.described));
	auto restored = engine::restoreInstance(*ctx.store, *driver, plan,
						engine::restoreJournalDir(ctx.location.stateDir), call.progress, warnOnStderr);
	if (replacing)
		ctx.admission->endRestore(plan.instanceKey);
	VS_TRY(restored);
	for (const engine::InstanceRestorePlan::Disk &d : plan.disks) {
		VS_ASSIGN(store::Manifest m, ctx.store->getManifest(d.snapshotId));
		restoredVolumeProductCodes(ctx, call, m);
	}

	Json list = Json::array();
	for (const engine::InstanceRestorePlan::Disk &d : plan.disks) {
		Json j = Json::object();
		j.set("Disk", Json::string(d.diskId));
		j.set("SnapshotId", Json::string(d.snapshotId));
		j.set("Target", Json::string(d.image.string()));
		j.set("Encrypted", Json::boolean(d.encrypted));
		list.append(j);
	}
	Json doc = Json::object();
	doc.set("SnapshotSetId", Json::string(setId));
	doc.set("Domain", Json::string(plan.instanceName));
	doc.set("Volumes", list);
	return ok(doc);
}

} // namespace virtsnap::daemon
