// Volume rows: their upsert, lookup, listing and removal, and the mark on
// the bitmaps of a stopped instance.
#include "catalog.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

const Table<VolumeRow> kVolumes = {
	.name = "volumes",
	.noun = "volume",
	.columns = {
		{"volume_id", &VolumeRow::volumeId},
		{"instance_key", &VolumeRow::instanceKey},
		{"instance_name", &VolumeRow::instanceName},
		{"disk_id", &VolumeRow::diskId},
		{"volume_class", &VolumeRow::volumeClass},
		{"target", &VolumeRow::target},
		{"size", &VolumeRow::size},
		{"encrypted", &VolumeRow::encrypted},
		{"kms_key_id", &VolumeRow::kmsKeyId},
		{"product_codes", &VolumeRow::productCodes},
		// Only mark/clearBitmapsSuspect write it: a put must not undo a
		// stop the hypervisor's hook reported meanwhile.
		{"bitmaps_suspect", &VolumeRow::bitmapsSuspect, kReadOnly},
	},
};

Result<void> setBitmapsSuspect(Connection &conn, const std::string &column, const std::string &value, bool suspect)
{
	VS_ASSIGN(Statement st, conn.cached("UPDATE volumes SET bitmaps_suspect = ? WHERE " + column + " = ?"));
	st.bind(1, int64_t(suspect ? 1 : 0));
	st.bind(2, value);
	return st.run();
}

} // namespace

Result<void> Catalog::putVolume(const VolumeRow &row)
{
	return transaction([&] { return putRow(conn_, kVolumes, row); });
}

Result<void> Catalog::markBitmapsSuspect(const std::string &instanceKey)
{
	return transaction([&] { return setBitmapsSuspect(conn_, "instance_key", instanceKey, true); });
}

Result<void> Catalog::clearBitmapsSuspect(const std::string &volumeId)
{
	return transaction([&] { return setBitmapsSuspect(conn_, "volume_id", volumeId, false); });
}

Result<std::optional<VolumeRow>> Catalog::getVolume(const std::string &id)
{
	return reading([&] { return getRow(conn_, kVolumes, id); });
}

Result<std::vector<VolumeRow>> Catalog::listVolumes(const std::vector<std::string> &ids)
{
	return reading([&]() -> Result<std::vector<VolumeRow>> {
		std::string sql = selectSql(kVolumes);
		if (!ids.empty())
			sql += " WHERE volume_id IN (SELECT value FROM json_each(?))";
		VS_ASSIGN(Statement st, conn_.cached(sql + " ORDER BY volume_id"));
		if (!ids.empty())
			st.bind(1, toJsonArray(ids));
		return readRows(conn_, st, kVolumes);
	});
}

Result<void> Catalog::removeVolume(const std::string &id)
{
	return transaction([&] { return removeRow(conn_, kVolumes, id); });
}

} // namespace virtsnap::catalog
