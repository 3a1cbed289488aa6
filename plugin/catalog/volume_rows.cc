// Volume rows: their upsert, lookup, listing and removal, and the mark on
// the bitmaps of a stopped instance.
#include "catalog.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

constexpr const char *kVolumeColumns =
	"volume_id, instance_key, instance_name, disk_id, volume_class, target, size, bitmaps_suspect";

VolumeRow volumeFrom(const Statement &st)
{
	VolumeRow r;
	r.volumeId = st.text(0);
	r.instanceKey = st.text(1);
	r.instanceName = st.text(2);
	r.diskId = st.text(3);
	r.volumeClass = st.text(4);
	r.target = st.text(5);
	r.size = uint64_t(st.integer(6));
	r.bitmapsSuspect = st.integer(7) != 0;
	return r;
}

} // namespace

Result<void> Catalog::putVolume(const VolumeRow &row)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached(
			"INSERT INTO volumes (volume_id, instance_key, instance_name, disk_id, volume_class, target, size) "
			"VALUES (?, ?, ?, ?, ?, ?, ?) "
			"ON CONFLICT (volume_id) DO UPDATE SET instance_key = excluded.instance_key, "
			"instance_name = excluded.instance_name, disk_id = excluded.disk_id, "
			"volume_class = excluded.volume_class, target = excluded.target, size = excluded.size");
		VS_TRY(st);
		st->bind(1, row.volumeId);
		st->bind(2, row.instanceKey);
		st->bind(3, row.instanceName);
		st->bind(4, row.diskId);
		st->bind(5, row.volumeClass);
		st->bind(6, row.target);
		st->bind(7, int64_t(row.size));
		VS_TRY(st->run());
		return writeTags(row.volumeId, row.tags);
	});
}

Result<void> Catalog::setBitmapsSuspect(const std::string &column, const std::string &value, bool suspect)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached("UPDATE volumes SET bitmaps_suspect = ? WHERE " + column + " = ?");
		VS_TRY(st);
		st->bind(1, int64_t(suspect ? 1 : 0));
		st->bind(2, value);
		return st->run();
	});
}

Result<void> Catalog::markBitmapsSuspect(const std::string &instanceKey)
{
	return setBitmapsSuspect("instance_key", instanceKey, true);
}

Result<void> Catalog::clearBitmapsSuspect(const std::string &volumeId)
{
	return setBitmapsSuspect("volume_id", volumeId, false);
}

Result<std::optional<VolumeRow>> Catalog::getVolume(const std::string &id)
{
	auto list = listVolumes({id});
	VS_TRY(list);
	if (list->empty())
		return std::optional<VolumeRow>();
	return std::optional<VolumeRow>(std::move(list->front()));
}

Result<std::vector<VolumeRow>> Catalog::listVolumes(const std::vector<std::string> &ids)
{
	std::lock_guard lock(mutex_);
	std::vector<VolumeRow> out;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		std::string sql = std::string("SELECT ") + kVolumeColumns + " FROM volumes";
		if (!ids.empty())
			sql += " WHERE volume_id IN (SELECT value FROM json_each(?))";
		sql += " ORDER BY volume_id";
		auto st = conn_.cached(sql);
		VS_TRY(st);
		if (!ids.empty())
			st->bind(1, toJsonArray(ids));
		for (;;) {
			auto row = st->step();
			VS_TRY(row);
			if (!*row)
				break;
			out.push_back(volumeFrom(*st));
		}
		for (VolumeRow &v : out) {
			auto tags = readTags(v.volumeId);
			VS_TRY(tags);
			v.tags = std::move(*tags);
		}
		return {};
	}));
	return out;
}

Result<void> Catalog::removeVolume(const std::string &id)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached("DELETE FROM volumes WHERE volume_id = ?");
		VS_TRY(st);
		st->bind(1, id);
		VS_TRY(st->run());
		return writeTags(id, {});
	});
}

} // namespace virtsnap::catalog
