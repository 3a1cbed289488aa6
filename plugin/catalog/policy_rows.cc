// Lifecycle policies and the record of their runs. The daemon's own state,
// which the manifests do not hold (clear() leaves it).
#include "catalog.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

const Table<PolicyRow> kPolicies = {
	.name = "policies",
	.noun = "policy",
	.columns = {
		{"policy_id", &PolicyRow::policyId},
		{"description", &PolicyRow::description},
		{"state", &PolicyRow::state},
		{"details", &PolicyRow::details},
		{"owner_id", &PolicyRow::ownerId},
		{"date_created", &PolicyRow::dateCreated},
		{"date_modified", &PolicyRow::dateModified},
		{"schedules_from", &PolicyRow::schedulesFrom},
	},
};

const Table<PolicyRunRow> kPolicyRuns = {
	.name = "policy_runs",
	.noun = "policy run",
	.columns = {
		{"run_id", &PolicyRunRow::runId},
		{"policy_id", &PolicyRunRow::policyId},
		{"schedule_name", &PolicyRunRow::scheduleName},
		{"start_time", &PolicyRunRow::startTime},
		{"end_time", &PolicyRunRow::endTime},
		{"outcome", &PolicyRunRow::outcome},
		{"message", &PolicyRunRow::message},
		{"snapshot_ids", &PolicyRunRow::snapshotIds},
		{"copies", &PolicyRunRow::copies},
		{"deleted_copies", &PolicyRunRow::deletedCopies},
	},
};

} // namespace

Result<void> Catalog::putPolicy(const PolicyRow &row)
{
	return transaction([&] { return putRow(conn_, kPolicies, row); });
}

Result<std::optional<PolicyRow>> Catalog::getPolicy(const std::string &id)
{
	return reading([&] { return getRow(conn_, kPolicies, id); });
}

Result<std::vector<PolicyRow>> Catalog::listPolicies()
{
	return reading([&]() -> Result<std::vector<PolicyRow>> {
		VS_ASSIGN(Statement st, conn_.cached(selectSql(kPolicies) + " ORDER BY date_created, policy_id"));
		return readRows(conn_, st, kPolicies);
	});
}

Result<void> Catalog::removePolicy(const std::string &id)
{
	return transaction([&]() -> Result<void> {
		VS_ASSIGN(Statement runs, conn_.cached("DELETE FROM policy_runs WHERE policy_id = ?"));
		runs.bind(1, id);
		VS_TRY(runs.run());
		return removeRow(conn_, kPolicies, id);
	});
}

Result<void> Catalog::putPolicyRun(const PolicyRunRow &row)
{
	return transaction([&]() -> Result<void> {
		VS_TRY(putRow(conn_, kPolicyRuns, row));
		VS_ASSIGN(Statement older, conn_.cached("DELETE FROM policy_runs WHERE policy_id = ?1 AND schedule_name = ?2"
							" AND run_id NOT IN (SELECT run_id FROM policy_runs"
							" WHERE policy_id = ?1 AND schedule_name = ?2"
							" ORDER BY start_time DESC, run_id DESC LIMIT ?3)"));
		older.bind(1, row.policyId);
		older.bind(2, row.scheduleName);
		older.bind(3, int64_t(kPolicyRunsKept));
		return older.run();
	});
}

Result<std::vector<PolicyRunRow>> Catalog::policyRuns(const std::string &policyId, const std::string &scheduleName,
						      int limit)
{
	return reading([&]() -> Result<std::vector<PolicyRunRow>> {
		VS_ASSIGN(Statement st, conn_.cached(selectSql(kPolicyRuns) +
						     " WHERE policy_id = ? AND schedule_name = ?"
						     " ORDER BY start_time DESC, run_id DESC LIMIT ?"));
		st.bind(1, policyId);
		st.bind(2, scheduleName);
		st.bind(3, int64_t(limit));
		return readRows(conn_, st, kPolicyRuns);
	});
}

} // namespace virtsnap::catalog
