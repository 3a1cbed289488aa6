#include "snapshot_permissions.h"

#include <algorithm>

#include "json/json.h"
#include "store/store.h"

namespace virtsnap::engine {

namespace {

constexpr const char *kPermissionKind = "snapshot-permissions";

Result<SnapshotPermissions> parsePermissions(const std::string &snapshotId, const std::string &text)
{
	auto j = Json::parse(text);
	if (!j || j->getString("SnapshotId") != snapshotId)
		return fail(errc::kCorrupt, "the permissions record of " + snapshotId + " is damaged");
	SnapshotPermissions p;
	Json users = j->get("UserIds");
	for (size_t i = 0; i < users.size(); i++)
		p.userIds.push_back(users.at(i).asString());
	p.isPublic = j->getBool("Public").value_or(false);
	return p;
}

} // namespace

bool SnapshotPermissions::grants(const std::string &accountId) const
{
	return isPublic || std::find(userIds.begin(), userIds.end(), accountId) != userIds.end();
}

Result<SnapshotPermissions> getSnapshotPermissions(store::Store &store, const std::string &snapshotId)
{
	VS_ASSIGN(auto text, store.getRecord(kPermissionKind, snapshotId));
	if (!text)
		return SnapshotPermissions{};
	return parsePermissions(snapshotId, *text);
}

Result<void> putSnapshotPermissions(store::Store &store, const std::string &snapshotId,
				    const SnapshotPermissions &permissions)
{
	if (permissions.empty())
		return store.removeRecord(kPermissionKind, snapshotId);
	Json j = Json::object();
	j.set("SnapshotId", Json::string(snapshotId));
	Json users = Json::array();
	for (const std::string &id : permissions.userIds)
		users.append(Json::string(id));
	j.set("UserIds", users);
	j.set("Public", Json::boolean(permissions.isPublic));
	return store.putRecord(kPermissionKind, snapshotId, j.dump());
}

Result<std::map<std::string, SnapshotPermissions>> allSnapshotPermissions(store::Store &store)
{
	std::map<std::string, SnapshotPermissions> out;
	VS_ASSIGN(auto ids, store.listRecordIds(kPermissionKind));
	for (const std::string &id : ids) {
		VS_ASSIGN(auto text, store.getRecord(kPermissionKind, id));
		if (!text)
			continue;
		VS_ASSIGN(out[id], parsePermissions(id, *text));
	}
	return out;
}

} // namespace virtsnap::engine
