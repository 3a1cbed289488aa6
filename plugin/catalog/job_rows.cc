// Job rows: what each create-snapshots job is doing, so that a daemon
// started after a crash can clean up. The daemon's own state, which the
// manifests do not hold (clear() leaves it).
#include "catalog.h"
#include "core/ids.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

const Table<JobRow> kJobs = {
	.name = "jobs",
	.noun = "job",
	.columns = {
		{"job_id", &JobRow::jobId},
		{"kind", &JobRow::kind},
		{"state", &JobRow::state},
		{"snapshot_ids", &JobRow::snapshotIds},
		{"target", &JobRow::target},
		{"details", &JobRow::details},
		{"pid", &JobRow::pid},
		{"created", &JobRow::created},
		{"updated", &JobRow::updated},
	},
};

} // namespace

Result<void> Catalog::putJob(const JobRow &row)
{
	JobRow stamped = row;
	std::string now = isoTimeNow();
	if (stamped.created.empty())
		stamped.created = now;
	if (stamped.updated.empty())
		stamped.updated = now;
	return transaction([&] { return putRow(conn_, kJobs, stamped); });
}

Result<std::optional<JobRow>> Catalog::getJob(const std::string &id)
{
	return reading([&] { return getRow(conn_, kJobs, id); });
}

Result<std::vector<JobRow>> Catalog::jobsInState(JobState state)
{
	return reading([&]() -> Result<std::vector<JobRow>> {
		VS_ASSIGN(Statement st, conn_.cached(selectSql(kJobs) + " WHERE state = ? ORDER BY created, job_id"));
		st.bind(1, name(state));
		return readRows(conn_, st, kJobs);
	});
}

Result<void> Catalog::removeJob(const std::string &id)
{
	return transaction([&] { return removeRow(conn_, kJobs, id); });
}

} // namespace virtsnap::catalog
