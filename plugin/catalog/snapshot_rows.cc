// Snapshot rows: their upsert, lookup and removal, and DescribeSnapshots.
#include <algorithm>

#include "catalog.h"
#include "catalog/snapshot_query.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

constexpr const char *kSnapshotColumns =
	"s.snapshot_id, s.volume_id, s.state, s.state_message, s.progress, s.start_time, s.completion_time, "
	"s.description, s.name, s.owner_id, s.consistency_level, s.encrypted, s.volume_size, s.bytes_added, "
	"s.snapshot_set_id, s.parent_snapshot_id, s.capture_mode, s.capture_reason, s.quiesce_note, s.disk_id, "
	"s.instance_name, s.freeze_millis, s.delete_requested, s.bytes_read";

SnapshotRow snapshotFrom(const Statement &st)
{
	SnapshotRow r;
	r.snapshotId = st.text(0);
	r.volumeId = st.text(1);
	// The catalog is ours: a name this code does not know is damage, and
	// the snapshot shows it rather than pass for a state it is not in.
	auto state = snapshotStateNamed(st.text(2));
	r.state = state.value_or(SnapshotState::Error);
	r.stateMessage = state ? st.text(3) : "the catalog holds an unknown state '" + st.text(2) + "'";
	r.progress = int(st.integer(4));
	r.startTime = st.text(5);
	r.completionTime = st.text(6);
	r.description = st.text(7);
	r.name = st.text(8);
	r.ownerId = st.text(9);
	r.consistencyLevel = st.text(10);
	r.encrypted = st.integer(11) != 0;
	r.volumeSize = uint64_t(st.integer(12));
	r.bytesAdded = uint64_t(st.integer(13));
	r.snapshotSetId = st.text(14);
	r.parentSnapshotId = st.text(15);
	r.captureMode = st.text(16);
	r.captureReason = st.text(17);
	r.quiesceNote = st.text(18);
	r.diskId = st.text(19);
	r.instanceName = st.text(20);
	r.freezeMillis = st.integer(21);
	r.deleteRequested = st.integer(22) != 0;
	r.bytesRead = uint64_t(st.integer(23));
	return r;
}

std::string quotedList(const std::vector<std::string> &ids)
{
	std::string out;
	for (size_t i = 0; i < ids.size(); i++)
		out += (i > 0 ? ", '" : "'") + ids[i] + "'";
	return out;
}

} // namespace

Result<void> Catalog::putSnapshot(const SnapshotRow &row)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached(
			"INSERT INTO snapshots (snapshot_id, volume_id, state, state_message, progress, start_time, "
			"completion_time, description, name, owner_id, consistency_level, encrypted, volume_size, "
			"bytes_added, snapshot_set_id, parent_snapshot_id, capture_mode, capture_reason, quiesce_note, "
			"disk_id, instance_name, freeze_millis, delete_requested, bytes_read) "
			"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
			"ON CONFLICT (snapshot_id) DO UPDATE SET volume_id = excluded.volume_id, state = excluded.state, "
			"state_message = excluded.state_message, progress = excluded.progress, "
			"start_time = excluded.start_time, completion_time = excluded.completion_time, "
			"description = excluded.description, name = excluded.name, owner_id = excluded.owner_id, "
			"consistency_level = excluded.consistency_level, encrypted = excluded.encrypted, "
			"volume_size = excluded.volume_size, bytes_added = excluded.bytes_added, "
			"snapshot_set_id = excluded.snapshot_set_id, parent_snapshot_id = excluded.parent_snapshot_id, "
			"capture_mode = excluded.capture_mode, capture_reason = excluded.capture_reason, "
			"quiesce_note = excluded.quiesce_note, disk_id = excluded.disk_id, "
			"instance_name = excluded.instance_name, freeze_millis = excluded.freeze_millis, "
			"delete_requested = excluded.delete_requested, bytes_read = excluded.bytes_read");
		VS_TRY(st);
		int i = 1;
		st->bind(i++, row.snapshotId);
		st->bind(i++, row.volumeId);
		st->bind(i++, name(row.state));
		st->bind(i++, row.stateMessage);
		st->bind(i++, int64_t(row.progress));
		st->bind(i++, row.startTime);
		st->bind(i++, row.completionTime);
		st->bind(i++, row.description);
		st->bind(i++, row.name);
		st->bind(i++, row.ownerId);
		st->bind(i++, row.consistencyLevel);
		st->bind(i++, int64_t(row.encrypted));
		// Two's complement round trip: sizes above 2^63 come back intact.
		st->bind(i++, int64_t(row.volumeSize));
		st->bind(i++, int64_t(row.bytesAdded));
		st->bind(i++, row.snapshotSetId);
		st->bind(i++, row.parentSnapshotId);
		st->bind(i++, row.captureMode);
		st->bind(i++, row.captureReason);
		st->bind(i++, row.quiesceNote);
		st->bind(i++, row.diskId);
		st->bind(i++, row.instanceName);
		st->bind(i++, row.freezeMillis);
		st->bind(i++, int64_t(row.deleteRequested));
		st->bind(i++, int64_t(row.bytesRead));
		VS_TRY(st->run());
		return writeTags(row.snapshotId, row.tags);
	});
}

Result<std::optional<SnapshotRow>> Catalog::getSnapshot(const std::string &id)
{
	std::lock_guard lock(mutex_);
	std::optional<SnapshotRow> out;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		auto st = conn_.cached(std::string("SELECT ") + kSnapshotColumns + " FROM snapshots s WHERE s.snapshot_id = ?");
		VS_TRY(st);
		st->bind(1, id);
		auto row = st->step();
		VS_TRY(row);
		if (!*row)
			return {};
		out = snapshotFrom(*st);
		auto tags = readTags(id);
		VS_TRY(tags);
		out->tags = std::move(*tags);
		return {};
	}));
	return out;
}

Result<void> Catalog::removeSnapshot(const std::string &id)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached("DELETE FROM snapshots WHERE snapshot_id = ?");
		VS_TRY(st);
		st->bind(1, id);
		VS_TRY(st->run());
		return writeTags(id, {});
	});
}

Result<bool> Catalog::snapshotExists(const std::string &id)
{
	auto st = conn_.cached("SELECT 1 FROM snapshots WHERE snapshot_id = ?");
	VS_TRY(st);
	st->bind(1, id);
	return st->step();
}

Result<Page> Catalog::describeSnapshots(const std::vector<Filter> &filters, const std::vector<std::string> &snapshotIds,
					int maxResults, const std::string &nextToken)
{
	if (maxResults != 0 && (maxResults < 5 || maxResults > 1000))
		return fail(errc::kInvalidParameterValue,
			    "MaxResults must be between 5 and 1000, not " + std::to_string(maxResults));
	std::optional<PageKey> after;
	if (!nextToken.empty()) {
		after = decodeNextToken(nextToken);
		if (!after)
			return fail(errc::kInvalidParameterValue, "NextToken '" + nextToken.substr(0, 64) + "' is not valid");
	}
	auto clause = filterClause(filters);
	VS_TRY(clause);

	std::lock_guard lock(mutex_);
	Page page;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		// EC2 names the requested ids that do not exist, whatever the
		// filters; ids that exist but do not match are just not listed.
		std::vector<std::string> missing;
		for (const std::string &id : snapshotIds) {
			auto exists = snapshotExists(id);
			VS_TRY(exists);
			if (!*exists && std::find(missing.begin(), missing.end(), id) == missing.end())
				missing.push_back(id);
		}
		if (missing.size() == 1)
			return fail(errc::kSnapshotNotFound, "The snapshot " + quotedList(missing) + " does not exist.");
		if (!missing.empty())
			return fail(errc::kSnapshotNotFound, "The snapshots " + quotedList(missing) + " do not exist.");

		std::string sql = std::string("SELECT ") + kSnapshotColumns + " FROM snapshots s WHERE " + clause->sql;
		// One parameter however many ids: no limit on bound variables.
		if (!snapshotIds.empty())
			sql += " AND s.snapshot_id IN (SELECT value FROM json_each(?))";
		// Keyset paging: rows added or removed meanwhile shift nothing.
		if (after)
			sql += " AND (s.start_time, s.snapshot_id) > (?, ?)";
		sql += " ORDER BY s.start_time, s.snapshot_id";
		if (maxResults > 0)
			sql += " LIMIT ?";
		auto st = conn_.prepare(sql);
		VS_TRY(st);
		int i = 1;
		for (const std::string &p : clause->params)
			st->bind(i++, p);
		if (!snapshotIds.empty())
			st->bind(i++, toJsonArray(snapshotIds));
		if (after) {
			st->bind(i++, after->startTime);
			st->bind(i++, after->snapshotId);
		}
		// One more than asked: whether a next page exists, without
		// handing out a token that leads to an empty page.
		if (maxResults > 0)
			st->bind(i++, int64_t(maxResults) + 1);
		for (;;) {
			auto row = st->step();
			VS_TRY(row);
			if (!*row)
				break;
			page.snapshots.push_back(snapshotFrom(*st));
		}
		if (maxResults > 0 && page.snapshots.size() > size_t(maxResults)) {
			page.snapshots.pop_back();
			const SnapshotRow &last = page.snapshots.back();
			page.nextToken = encodeNextToken({last.startTime, last.snapshotId});
		}
		for (SnapshotRow &s : page.snapshots) {
			auto tags = readTags(s.snapshotId);
			VS_TRY(tags);
			s.tags = std::move(*tags);
		}
		return {};
	}));
	return page;
}

Result<int> Catalog::countPending(const std::string &volumeId)
{
	std::lock_guard lock(mutex_);
	int count = 0;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		auto st = conn_.cached("SELECT COUNT(*) FROM snapshots WHERE volume_id = ? AND state = 'pending'");
		VS_TRY(st);
		st->bind(1, volumeId);
		auto row = st->step();
		VS_TRY(row);
		count = *row ? int(st->integer(0)) : 0;
		return {};
	}));
	return count;
}

} // namespace virtsnap::catalog
