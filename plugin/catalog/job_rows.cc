// Job rows: what each create-snapshots job is doing, so that a daemon
// started after a crash can clean up. The daemon's own state, which the
// manifests do not hold (clear() leaves it).
#include "catalog.h"
#include "core/ids.h"
#include "json/json.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

constexpr const char *kJobColumns = "job_id, kind, state, snapshot_ids, target, details, pid, created, updated";

Result<JobRow> jobFrom(const Statement &st, const std::filesystem::path &file)
{
	JobRow r;
	r.jobId = st.text(0);
	r.kind = st.text(1);
	auto state = jobStateNamed(st.text(2));
	if (!state)
		return fail(errc::kCorrupt, "catalog " + file.string() + ": job " + r.jobId + ": unknown state '" +
						    st.text(2) + "'");
	r.state = *state;
	auto ids = virtsnap::Json::parse(st.text(3));
	if (!ids || !ids->isArray())
		return fail(errc::kCorrupt, "catalog " + file.string() + ": job " + r.jobId + ": snapshot ids are not a JSON array");
	for (size_t i = 0; i < ids->size(); i++) {
		if (!ids->at(i).isString())
			return fail(errc::kCorrupt,
				    "catalog " + file.string() + ": job " + r.jobId + ": a snapshot id is not a string");
		r.snapshotIds.push_back(ids->at(i).asString());
	}
	r.target = st.text(4);
	r.details = st.text(5);
	r.pid = st.integer(6);
	r.created = st.text(7);
	r.updated = st.text(8);
	return r;
}

} // namespace

Result<void> Catalog::putJob(const JobRow &row)
{
	std::lock_guard lock(mutex_);
	std::string now = isoTimeNow();
	return inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached(
			"INSERT INTO jobs (job_id, kind, state, snapshot_ids, target, details, pid, created, updated) "
			"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
			"ON CONFLICT (job_id) DO UPDATE SET kind = excluded.kind, state = excluded.state, "
			"snapshot_ids = excluded.snapshot_ids, target = excluded.target, details = excluded.details, "
			"pid = excluded.pid, created = excluded.created, updated = excluded.updated");
		VS_TRY(st);
		st->bind(1, row.jobId);
		st->bind(2, row.kind);
		st->bind(3, name(row.state));
		st->bind(4, toJsonArray(row.snapshotIds));
		st->bind(5, row.target);
		st->bind(6, row.details);
		st->bind(7, row.pid);
		st->bind(8, row.created.empty() ? now : row.created);
		st->bind(9, row.updated.empty() ? now : row.updated);
		return st->run();
	});
}

Result<std::optional<JobRow>> Catalog::getJob(const std::string &id)
{
	std::lock_guard lock(mutex_);
	std::optional<JobRow> out;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		auto st = conn_.cached(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE job_id = ?");
		VS_TRY(st);
		st->bind(1, id);
		auto row = st->step();
		VS_TRY(row);
		if (!*row)
			return {};
		auto job = jobFrom(*st, conn_.file());
		VS_TRY(job);
		out = std::move(*job);
		return {};
	}));
	return out;
}

Result<std::vector<JobRow>> Catalog::jobsInState(JobState state)
{
	std::lock_guard lock(mutex_);
	std::vector<JobRow> out;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		auto st = conn_.cached(std::string("SELECT ") + kJobColumns +
				       " FROM jobs WHERE state = ? ORDER BY created, job_id");
		VS_TRY(st);
		st->bind(1, name(state));
		for (;;) {
			auto row = st->step();
			VS_TRY(row);
			if (!*row)
				return {};
			auto job = jobFrom(*st, conn_.file());
			VS_TRY(job);
			out.push_back(std::move(*job));
		}
	}));
	return out;
}

Result<void> Catalog::removeJob(const std::string &id)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached("DELETE FROM jobs WHERE job_id = ?");
		VS_TRY(st);
		st->bind(1, id);
		return st->run();
	});
}

} // namespace virtsnap::catalog
