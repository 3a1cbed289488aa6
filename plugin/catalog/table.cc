// Tags, which snapshots and volumes share, and the JSON lists bound as one
// parameter.
#include "table.h"

#include "catalog.h"
#include "json/json.h"

namespace virtsnap::catalog {

std::string toJsonArray(const std::vector<std::string> &items)
{
	virtsnap::Json arr = virtsnap::Json::array();
	for (const std::string &s : items)
		arr.append(virtsnap::Json::string(s));
	return arr.dump();
}

Result<void> Catalog::writeTags(const std::string &resourceId, const Tags &tags)
{
	auto del = conn_.cached("DELETE FROM tags WHERE resource_id = ?");
	VS_TRY(del);
	del->bind(1, resourceId);
	VS_TRY(del->run());
	auto ins = conn_.cached("INSERT INTO tags (resource_id, key, value, position) VALUES (?, ?, ?, ?) "
				"ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value");
	VS_TRY(ins);
	for (size_t i = 0; i < tags.size(); i++) {
		ins->bind(1, resourceId);
		ins->bind(2, tags[i].first);
		ins->bind(3, tags[i].second);
		ins->bind(4, int64_t(i));
		VS_TRY(ins->run());
	}
	return {};
}

Result<Tags> Catalog::readTags(const std::string &resourceId)
{
	auto st = conn_.cached("SELECT key, value FROM tags WHERE resource_id = ? ORDER BY position");
	VS_TRY(st);
	st->bind(1, resourceId);
	Tags tags;
	for (;;) {
		auto row = st->step();
		VS_TRY(row);
		if (!*row)
			return tags;
		tags.emplace_back(st->text(0), st->text(1));
	}
}

} // namespace virtsnap::catalog
