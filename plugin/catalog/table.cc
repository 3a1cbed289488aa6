// The values of a row's members as SQLite stores them, and the tags that
// snapshots and volumes share.
#include "table.h"

#include "json/json.h"

namespace virtsnap::catalog {

void bindValue(Statement &st, int i, const std::string &value)
{
	st.bind(i, value);
}

void bindValue(Statement &st, int i, SnapshotState value)
{
	st.bind(i, name(value));
}

void bindValue(Statement &st, int i, JobState value)
{
	st.bind(i, name(value));
}

void bindValue(Statement &st, int i, const std::vector<std::string> &value)
{
	st.bind(i, toJsonArray(value));
}

Result<void> readValue(const Statement &st, int i, std::string &value)
{
	value = st.text(i);
	return {};
}

Result<void> readValue(const Statement &st, int i, SnapshotState &value)
{
	value = snapshotStateNamed(st.text(i)).value_or(SnapshotState::Error);
	return {};
}

Result<void> readValue(const Statement &st, int i, JobState &value)
{
	auto state = jobStateNamed(st.text(i));
	if (!state)
		return fail(errc::kCorrupt, "unknown state '" + st.text(i) + "'");
	value = *state;
	return {};
}

// Lists: a job's snapshot ids, a snapshot's product codes.
Result<void> readValue(const Statement &st, int i, std::vector<std::string> &value)
{
	auto items = virtsnap::Json::parse(st.text(i));
	if (!items || !items->isArray())
		return fail(errc::kCorrupt, "not a JSON array");
	value.clear();
	for (size_t k = 0; k < items->size(); k++) {
		if (!items->at(k).isString())
			return fail(errc::kCorrupt, "holds something other than strings");
		value.push_back(items->at(k).asString());
	}
	return {};
}

std::string toJsonArray(const std::vector<std::string> &items)
{
	virtsnap::Json arr = virtsnap::Json::array();
	for (const std::string &s : items)
		arr.append(virtsnap::Json::string(s));
	return arr.dump();
}

Result<void> writeTags(Connection &conn, const std::string &resourceId, const Tags &tags)
{
	VS_ASSIGN(Statement del, conn.cached("DELETE FROM tags WHERE resource_id = ?"));
	del.bind(1, resourceId);
	VS_TRY(del.run());
	VS_ASSIGN(Statement ins, conn.cached("INSERT INTO tags (resource_id, key, value, position) VALUES (?, ?, ?, ?) "
					     "ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value"));
	for (size_t i = 0; i < tags.size(); i++) {
		ins.bind(1, resourceId);
		ins.bind(2, tags[i].first);
		ins.bind(3, tags[i].second);
		ins.bind(4, int64_t(i));
		VS_TRY(ins.run());
	}
	return {};
}

Result<Tags> readTags(Connection &conn, const std::string &resourceId)
{
	VS_ASSIGN(Statement st, conn.cached("SELECT key, value FROM tags WHERE resource_id = ? ORDER BY position"));
	st.bind(1, resourceId);
	Tags tags;
	for (;;) {
		VS_ASSIGN(bool more, st.step());
		if (!more)
			return tags;
		tags.emplace_back(st.text(0), st.text(1));
	}
}

} // namespace virtsnap::catalog
