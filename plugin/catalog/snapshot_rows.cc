// Snapshot rows: their upsert, lookup and removal, and DescribeSnapshots.
#include <algorithm>

#include "catalog.h"
#include "catalog/snapshot_query.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

// Of kSnapshots below.
constexpr int kStateColumn = 2;

// The catalog is ours: a state name this code does not know is damage, and
// the snapshot shows it (readValue made it Error) rather than pass for a
// state it is not in.
void showUnknownState(const Statement &st, SnapshotRow &row)
{
	std::string stored = st.text(kStateColumn);
	if (!snapshotStateNamed(stored))
		row.stateMessage = "the catalog holds an unknown state '" + stored + "'";
}

const Table<SnapshotRow> kSnapshots = {
	.name = "snapshots",
	.noun = "snapshot",
	.columns = {
		{"snapshot_id", &SnapshotRow::snapshotId},
		{"volume_id", &SnapshotRow::volumeId},
		{"state", &SnapshotRow::state},
		{"state_message", &SnapshotRow::stateMessage},
		{"progress", &SnapshotRow::progress},
		{"start_time", &SnapshotRow::startTime},
		{"completion_time", &SnapshotRow::completionTime},
		{"description", &SnapshotRow::description},
		{"name", &SnapshotRow::name},
		{"owner_id", &SnapshotRow::ownerId},
		{"consistency_level", &SnapshotRow::consistencyLevel},
		{"encrypted", &SnapshotRow::encrypted},
		{"kms_key_id", &SnapshotRow::kmsKeyId},
		{"volume_size", &SnapshotRow::volumeSize},
		{"bytes_added", &SnapshotRow::bytesAdded},
		{"snapshot_set_id", &SnapshotRow::snapshotSetId},
		{"parent_snapshot_id", &SnapshotRow::parentSnapshotId},
		{"capture_mode", &SnapshotRow::captureMode},
		{"capture_reason", &SnapshotRow::captureReason},
		{"quiesce_note", &SnapshotRow::quiesceNote},
		{"disk_id", &SnapshotRow::diskId},
		{"instance_name", &SnapshotRow::instanceName},
		{"freeze_millis", &SnapshotRow::freezeMillis},
		{"delete_requested", &SnapshotRow::deleteRequested},
		{"bytes_read", &SnapshotRow::bytesRead},
		{"product_codes", &SnapshotRow::productCodes},
		{"source_snapshot_id", &SnapshotRow::sourceSnapshotId},
		{"source_store", &SnapshotRow::sourceStore},
		{"bytes_transferred", &SnapshotRow::bytesTransferred},
	},
	.alias = "s",
	.afterRead = showUnknownState,
};

std::string quotedList(const std::vector<std::string> &ids)
{
	std::string out;
	for (size_t i = 0; i < ids.size(); i++)
		out += (i > 0 ? ", '" : "'") + ids[i] + "'";
	return out;
}

// EC2 names the requested ids that do not exist, whatever the filters; ids
// that exist but do not match are just not listed.
Result<void> requireSnapshots(Connection &conn, const std::vector<std::string> &ids)
{
	std::vector<std::string> missing;
	for (const std::string &id : ids) {
		VS_ASSIGN(bool exists, rowExists(conn, kSnapshots, id));
		if (!exists && std::find(missing.begin(), missing.end(), id) == missing.end())
			missing.push_back(id);
	}
	if (missing.size() == 1)
		return fail(errc::kSnapshotNotFound, "The snapshot " + quotedList(missing) + " does not exist.");
	if (!missing.empty())
		return fail(errc::kSnapshotNotFound, "The snapshots " + quotedList(missing) + " do not exist.");
	return {};
}

// The page's query: the filters, the requested ids, the rows after `after`,
// and one row more than maxResults, which says whether a next page exists
// without handing out a token that leads to an empty page.
Result<Statement> pageQuery(Connection &conn, const Clause &clause, const std::vector<std::string> &snapshotIds,
			    const std::optional<PageKey> &after, int maxResults)
{
	std::string sql = selectSql(kSnapshots) + " WHERE " + clause.sql;
	// One parameter however many ids: no limit on bound variables.
	if (!snapshotIds.empty())
		sql += " AND s.snapshot_id IN (SELECT value FROM json_each(?))";
	// Keyset paging: rows added or removed meanwhile shift nothing.
	if (after)
		sql += " AND (s.start_time, s.snapshot_id) > (?, ?)";
	sql += " ORDER BY s.start_time, s.snapshot_id";
	if (maxResults > 0)
		sql += " LIMIT ?";
	VS_ASSIGN(Statement st, conn.prepare(sql));
	int i = 1;
	for (const std::string &p : clause.params)
		st.bind(i++, p);
	if (!snapshotIds.empty())
		st.bind(i++, toJsonArray(snapshotIds));
	if (after) {
		st.bind(i++, after->startTime);
		st.bind(i++, after->snapshotId);
	}
	if (maxResults > 0)
		st.bind(i++, int64_t(maxResults) + 1);
	return st;
}

} // namespace

Result<void> Catalog::putSnapshot(const SnapshotRow &row)
{
	return transaction([&] { return putRow(conn_, kSnapshots, row); });
}

Result<std::optional<SnapshotRow>> Catalog::getSnapshot(const std::string &id)
{
	return reading([&] { return getRow(conn_, kSnapshots, id); });
}

Result<void> Catalog::removeSnapshot(const std::string &id)
{
	return transaction([&] { return removeRow(conn_, kSnapshots, id); });
}

Result<Page> Catalog::describeSnapshots(const std::vector<Filter> &filters, const std::vector<std::string> &snapshotIds,
					int maxResults, const std::string &nextToken, const std::vector<Scope> &scopes)
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
	VS_ASSIGN(Clause clause, filterClause(filters));
	for (const Scope &scope : scopes) {
		clause.sql += " AND (s.owner_id IN (SELECT value FROM json_each(?)) OR s.snapshot_id IN (SELECT value "
			      "FROM json_each(?)))";
		clause.params.push_back(toJsonArray(scope.owners));
		clause.params.push_back(toJsonArray(scope.snapshotIds));
	}

	return reading([&]() -> Result<Page> {
		VS_TRY(requireSnapshots(conn_, snapshotIds));
		VS_ASSIGN(Statement st, pageQuery(conn_, clause, snapshotIds, after, maxResults));
		Page page;
		VS_ASSIGN(page.snapshots, readRows(conn_, st, kSnapshots));
		if (maxResults > 0 && page.snapshots.size() > size_t(maxResults)) {
			page.snapshots.pop_back();
			const SnapshotRow &last = page.snapshots.back();
			page.nextToken = encodeNextToken({last.startTime, last.snapshotId});
		}
		return page;
	});
}

Result<int> Catalog::countPending(const std::string &volumeId)
{
	return reading([&]() -> Result<int> {
		VS_ASSIGN(Statement st,
			  conn_.cached("SELECT COUNT(*) FROM snapshots WHERE volume_id = ? AND state = 'pending'"));
		st.bind(1, volumeId);
		VS_ASSIGN(bool row, st.step());
		return row ? int(st.integer(0)) : 0;
	});
}

} // namespace virtsnap::catalog
