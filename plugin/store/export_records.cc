#include "export_records.h"

namespace virtsnap::store {

Json exportRecordJson(const ExportRecord &r)
{
	Json j = Json::object();
	j.set("ExportId", Json::string(r.exportId));
	j.set("SnapshotId", Json::string(r.snapshotId));
	j.set("Host", Json::string(r.host));
	j.set("Pid", Json::integer(r.pid));
	j.set("Socket", Json::string(r.socket));
	j.set("Port", Json::integer(r.port));
	j.set("Bind", Json::string(r.bind));
	j.set("Uri", Json::string(r.uri));
	j.set("Writable", Json::boolean(r.writable));
	j.set("OverlayDir", Json::string(r.overlayDir));
	j.set("StartTime", Json::integer(r.startTime));
	setHeldManifest(j, r.manifest, r.heldUntil);
	return j;
}

Result<ExportRecord> parseExportRecord(const Json &record, const std::string &where)
{
	VS_ASSIGN(HeldManifest held, parseHeldManifest(record, where));
	ExportRecord r;
	auto exportId = record.getString("ExportId");
	auto snapshotId = record.getString("SnapshotId");
	if (!exportId || !snapshotId)
		return fail(errc::kCorrupt, where + " lacks its ExportId or SnapshotId");
	r.exportId = *exportId;
	r.snapshotId = *snapshotId;
	r.host = record.getString("Host").value_or("");
	r.pid = record.getInt("Pid").value_or(0);
	r.socket = record.getString("Socket").value_or("");
	r.port = record.getInt("Port").value_or(0);
	r.bind = record.getString("Bind").value_or("");
	r.uri = record.getString("Uri").value_or("");
	r.writable = record.getBool("Writable").value_or(false);
	r.overlayDir = record.getString("OverlayDir").value_or("");
	r.startTime = record.getInt("StartTime").value_or(0);
	r.heldUntil = held.heldUntil;
	r.manifest = std::move(held.manifest);
	return r;
}

Result<void> putExportRecord(Store &store, const ExportRecord &r)
{
	return store.putRecord(kSnapshotExportRecords, r.exportId, exportRecordJson(r).dump());
}

Result<std::vector<ExportRecord>> listExportRecords(const Store &store)
{
	std::vector<ExportRecord> out;
	VS_ASSIGN(auto ids, store.listRecordIds(kSnapshotExportRecords));
	for (const std::string &id : ids) {
		VS_ASSIGN(auto json, getJsonRecord(store, kSnapshotExportRecords, id));
		if (!json)
			continue; // stopped since the listing
		VS_ASSIGN(ExportRecord r, parseExportRecord(*json, std::string("record ") + kSnapshotExportRecords + "/" + id));
		out.push_back(std::move(r));
	}
	return out;
}

Result<bool> renewExportRecord(Store &store, const std::string &exportId)
{
	VS_ASSIGN(auto json, getJsonRecord(store, kSnapshotExportRecords, exportId));
	if (!json)
		return false;
	VS_ASSIGN(int64_t now, storeTime(store));
	json->set("HeldUntil", Json::integer(now + kExportHoldSeconds));
	VS_TRY(store.putRecord(kSnapshotExportRecords, exportId, json->dump()));
	return true;
}

Result<std::vector<ExportRecord>> liveExportsOf(const Store &store, const std::string &snapshotId, int64_t now)
{
	VS_ASSIGN(auto all, listExportRecords(store));
	std::vector<ExportRecord> out;
	for (ExportRecord &r : all)
		if (r.snapshotId == snapshotId && r.heldUntil > now)
			out.push_back(std::move(r));
	return out;
}

} // namespace virtsnap::store
