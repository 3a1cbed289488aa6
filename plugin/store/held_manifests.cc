#include "held_manifests.h"

#include "export_records.h"

namespace virtsnap::store {

int64_t unixSeconds(std::chrono::system_clock::time_point t)
{
	return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

Result<int64_t> storeTime(Store &store)
{
	VS_ASSIGN(auto now, store.backend().now());
	return unixSeconds(now);
}

Result<std::optional<Json>> getJsonRecord(const Store &store, const std::string &kind, const std::string &id)
{
	VS_ASSIGN(auto text, store.getRecord(kind, id));
	if (!text)
		return std::optional<Json>();
	auto json = Json::parse(*text);
	if (!json)
		return fail(errc::kCorrupt, "record " + kind + "/" + id + " is not JSON");
	return json;
}

Result<HeldManifest> parseHeldManifest(const Json &record, const std::string &where)
{
	auto manifest = record.getString("Manifest");
	auto until = record.getInt("HeldUntil");
	if (!manifest || !until)
		return fail(errc::kCorrupt, where + " lacks its Manifest or HeldUntil");
	auto m = parseManifest(*manifest);
	if (!m)
		return fail(errc::kCorrupt, where + ": " + m.error().message);
	return HeldManifest{std::move(*m), *until};
}

void setHeldManifest(Json &record, const Manifest &m, int64_t heldUntil)
{
	record.set("Manifest", Json::string(serializeManifest(m)));
	record.set("HeldUntil", Json::integer(heldUntil));
}

Result<HeldSet> listHeldManifests(const Store &store, int64_t now)
{
	HeldSet set;
	for (const char *kind : {kSnapshotLockRecords, kRecycleBinRecords, kSnapshotExportRecords}) {
		VS_ASSIGN(auto ids, store.listRecordIds(kind));
		for (const std::string &id : ids) {
			std::string where = std::string("record ") + kind + "/" + id;
			VS_ASSIGN(auto json, getJsonRecord(store, kind, id));
			if (!json)
				continue; // removed since the listing
			VS_ASSIGN(HeldManifest h, parseHeldManifest(*json, where));
			if (h.heldUntil > now)
				set.held.push_back(std::move(h.manifest));
			else if (std::string(kind) == kRecycleBinRecords)
				set.expiredBinEntries.push_back(id);
			else if (std::string(kind) == kSnapshotExportRecords)
				set.expiredExports.push_back(id);
			else
				set.expiredLocks.push_back(id);
		}
	}
	return set;
}

} // namespace virtsnap::store
