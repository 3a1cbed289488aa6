// modify-, describe- and reset-snapshot-attribute: a snapshot's
// createVolumePermission, as EC2 shapes it (engine/snapshot_permissions.h).
// Only the owning account changes or reads it; each change emits a
// shareSnapshot event.
#include <algorithm>

#include "access.h"
#include "core/ids.h"
#include "engine/accounts.h"
#include "engine/snapshot_permissions.h"
#include "events/dispatcher.h"
#include "events/event.h"
#include "handlers.h"
#include "store/store.h"

namespace virtsnap::daemon {

namespace {

constexpr const char *kCreateVolumePermission = "createVolumePermission";

Result<void> requirePermissionAttribute(const Call &call)
{
	VS_ASSIGN(std::string attribute, call.args.require("attribute"));
	if (attribute != kCreateVolumePermission)
		return fail(errc::kInvalidParameterValue,
			    "--attribute '" + attribute + "' is not supported (createVolumePermission is)");
	return {};
}

// The owner's completed snapshot, with its permissions as the store has them.
Result<engine::SnapshotPermissions> ownPermissions(Context &ctx, const Call &call, const std::string &id,
						   catalog::SnapshotRow *row)
{
	VS_TRY(checkSnapshotId(id));
	VS_ASSIGN(*row, ownedSnapshot(ctx, call, id));
	VS_TRY(requireCompleted(*row, "shared"));
	return engine::getSnapshotPermissions(*ctx.store, id);
}

Json permissionsJson(const std::string &snapshotId, const engine::SnapshotPermissions &p)
{
	Json list = Json::array();
	for (const std::string &id : p.userIds) {
		Json u = Json::object();
		u.set("UserId", Json::string(id));
		list.append(u);
	}
	if (p.isPublic) {
		Json g = Json::object();
		g.set("Group", Json::string("all"));
		list.append(g);
	}
	Json j = Json::object();
	j.set("SnapshotId", Json::string(snapshotId));
	j.set("CreateVolumePermissions", list);
	return j;
}

void emitShared(Context &ctx, const std::string &snapshotId, const std::string &owner)
{
	if (!ctx.events)
		return;
	events::SnapshotNotice n;
	n.event = "shareSnapshot";
	n.result = "succeeded";
	n.snapshotId = snapshotId;
	n.source = owner; // AWS: the account that shared it
	n.account = owner;
	n.startTime = n.endTime = isoTimeNow();
	ctx.events->emit(events::toJson(n));
}

// --user-ids: accounts of this store, none the owner's own.
Result<std::vector<std::string>> granteesOf(Context &ctx, const Call &call)
{
	std::vector<std::string> out;
	for (const std::string &id : call.args.all("user-ids")) {
		if (!engine::isAccountId(id))
			return fail(errc::kInvalidParameterValue, "--user-ids '" + id + "' is not an account id (12 digits)");
		VS_ASSIGN(auto account, engine::getAccount(*ctx.store, id));
		if (!account)
			return fail(errc::kInvalidParameterValue, "--user-ids " + id + ": no such account in the store");
		out.push_back(id);
	}
	return out;
}

} // namespace

Result<Reply> modifySnapshotAttribute(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	VS_TRY(requirePermissionAttribute(call));
	VS_ASSIGN(std::string operation, call.args.require("operation-type"));
	if (operation != "add" && operation != "remove")
		return fail(errc::kInvalidParameterValue, "--operation-type '" + operation + "' is neither add nor remove");
	for (const std::string &g : call.args.all("group-names"))
		if (g != "all")
			return fail(errc::kInvalidParameterValue, "--group-names '" + g + "' is not a group (all is)");
	bool everyone = call.args.has("group-names");
	if (!everyone && !call.args.has("user-ids"))
		return fail(errc::kMissingParameter, "--user-ids or --group-names all is required");
	VS_ASSIGN(auto users, granteesOf(ctx, call));
	catalog::SnapshotRow row;
	VS_ASSIGN(engine::SnapshotPermissions p, ownPermissions(ctx, call, id, &row));
	bool add = operation == "add";
	// The manifest, not the catalog's row, says whether it is encrypted.
	VS_ASSIGN(store::Manifest manifest, ctx.store->getManifest(id));
	if (add && everyone && manifest.encrypted)
		return fail(errc::kInvalidParameterValue,
			    "snapshot " + id + " is encrypted: it can be shared with accounts, never made public");
	for (const std::string &user : users) {
		auto at = std::find(p.userIds.begin(), p.userIds.end(), user);
		if (add && at == p.userIds.end())
			p.userIds.push_back(user);
		else if (!add && at != p.userIds.end())
			p.userIds.erase(at);
	}
	std::sort(p.userIds.begin(), p.userIds.end());
	if (everyone)
		p.isPublic = add;
	VS_TRY(engine::putSnapshotPermissions(*ctx.store, id, p));
	emitShared(ctx, id, call.accountId);
	return ok(permissionsJson(id, p));
}

Result<Reply> describeSnapshotAttribute(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	VS_TRY(requirePermissionAttribute(call));
	catalog::SnapshotRow row;
	VS_ASSIGN(engine::SnapshotPermissions p, ownPermissions(ctx, call, id, &row));
	return ok(permissionsJson(id, p));
}

Result<Reply> resetSnapshotAttribute(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	VS_TRY(requirePermissionAttribute(call));
	catalog::SnapshotRow row;
	VS_ASSIGN(engine::SnapshotPermissions p, ownPermissions(ctx, call, id, &row));
	VS_TRY(engine::putSnapshotPermissions(*ctx.store, id, {}));
	if (!p.empty())
		emitShared(ctx, id, call.accountId);
	return ok(permissionsJson(id, {}));
}

} // namespace virtsnap::daemon
