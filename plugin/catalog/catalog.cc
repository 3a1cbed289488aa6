#include "catalog.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "catalog/snapshot_query.h"
#include "core/ids.h"
#include "json/json.h"

namespace virtsnap::catalog {

namespace {

// Version 1. A later version adds a migration from each older one; a file
// newer than the code is refused rather than misread.
constexpr const char *kSchemaV1 = R"sql(
CREATE TABLE snapshots (
	snapshot_id TEXT PRIMARY KEY NOT NULL,
	volume_id TEXT NOT NULL,
	state TEXT NOT NULL,
	state_message TEXT NOT NULL,
	progress INTEGER NOT NULL,
	start_time TEXT NOT NULL,
	completion_time TEXT NOT NULL,
	description TEXT NOT NULL,
	name TEXT NOT NULL,
	owner_id TEXT NOT NULL,
	consistency_level TEXT NOT NULL,
	encrypted INTEGER NOT NULL,
	volume_size INTEGER NOT NULL,
	bytes_added INTEGER NOT NULL,
	bytes_read INTEGER NOT NULL DEFAULT 0,
	snapshot_set_id TEXT NOT NULL,
	parent_snapshot_id TEXT NOT NULL,
	capture_mode TEXT NOT NULL,
	capture_reason TEXT NOT NULL,
	quiesce_note TEXT NOT NULL,
	disk_id TEXT NOT NULL,
	instance_name TEXT NOT NULL,
	freeze_millis INTEGER NOT NULL,
	delete_requested INTEGER NOT NULL
);
CREATE INDEX snapshots_by_volume_state ON snapshots (volume_id, state);
CREATE INDEX snapshots_by_start ON snapshots (start_time, snapshot_id);

CREATE TABLE volumes (
	volume_id TEXT PRIMARY KEY NOT NULL,
	instance_key TEXT NOT NULL,
	instance_name TEXT NOT NULL,
	disk_id TEXT NOT NULL,
	volume_class TEXT NOT NULL,
	target TEXT NOT NULL,
	size INTEGER NOT NULL,
	-- The instance stopped since the volume's last snapshot began: its
	-- bitmaps are re-examined by the next one (putVolume leaves this be).
	bitmaps_suspect INTEGER NOT NULL DEFAULT 0
);

-- Tags of snapshots and volumes alike (their ids never collide);
-- position keeps the order they were given in.
CREATE TABLE tags (
	resource_id TEXT NOT NULL,
	key TEXT NOT NULL,
	value TEXT NOT NULL,
	position INTEGER NOT NULL,
	PRIMARY KEY (resource_id, key)
) WITHOUT ROWID;

CREATE TABLE jobs (
	job_id TEXT PRIMARY KEY NOT NULL,
	kind TEXT NOT NULL,
	state TEXT NOT NULL,
	snapshot_ids TEXT NOT NULL, -- JSON array of strings
	target TEXT NOT NULL,
	details TEXT NOT NULL,
	pid INTEGER NOT NULL,
	created TEXT NOT NULL,
	updated TEXT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, created, job_id);

CREATE TABLE requests (
	client_token TEXT PRIMARY KEY NOT NULL,
	request_hash TEXT NOT NULL,
	response TEXT NOT NULL,
	created TEXT NOT NULL
);
CREATE INDEX requests_by_created ON requests (created);
)sql";

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

constexpr const char *kJobColumns = "job_id, kind, state, snapshot_ids, target, details, pid, created, updated";

std::string toJsonArray(const std::vector<std::string> &items)
{
	virtsnap::Json arr = virtsnap::Json::array();
	for (const std::string &s : items)
		arr.append(virtsnap::Json::string(s));
	return arr.dump();
}

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

std::string quotedList(const std::vector<std::string> &ids)
{
	std::string out;
	for (size_t i = 0; i < ids.size(); i++)
		out += (i > 0 ? ", '" : "'") + ids[i] + "'";
	return out;
}

} // namespace

Result<std::unique_ptr<Catalog>> Catalog::open(const std::filesystem::path &file)
{
	// Created here rather than by SQLite so that it is 0600 from the start
	// (SQLite gives the -wal and -shm files the same mode). O_EXCL: an
	// existing file is left to SQLite, even one this process cannot write.
	int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EEXIST)
		return failErrno("catalog " + file.string(), errno);
	if (fd >= 0)
		::close(fd);

	auto conn = Connection::open(file);
	VS_TRY(conn);
	std::unique_ptr<Catalog> cat(new Catalog(std::move(*conn)));
	Connection &c = cat->conn_;
	// Before anything that may wait for a lock: the WAL switch does.
	VS_TRY(c.exec("PRAGMA busy_timeout = 5000"));
	{
		auto st = c.prepare("PRAGMA journal_mode = WAL");
		VS_TRY(st);
		auto row = st->step();
		VS_TRY(row);
		std::string mode = *row ? st->text(0) : std::string();
		if (mode != "wal")
			return fail(errc::kIo, "catalog " + file.string() + ": cannot use WAL (journal mode is '" + mode + "')");
	}
	// FULL: a committed job or request survives a power loss, which the
	// daemon relies on after a crash (NORMAL could lose the last commits).
	VS_TRY(c.exec("PRAGMA synchronous = FULL"));
	VS_TRY(cat->initSchema());
	return cat;
}

Catalog::~Catalog() = default;

Result<void> Catalog::initSchema()
{
	std::lock_guard lock(mutex_);
	auto version = [&]() -> Result<int64_t> {
		auto st = conn_.prepare("PRAGMA user_version");
		VS_TRY(st);
		auto row = st->step();
		VS_TRY(row);
		return *row ? st->integer(0) : 0;
	};
	auto tooNew = [&](int64_t v) {
		return fail(errc::kCorrupt, "catalog " + conn_.file().string() + " has schema version " + std::to_string(v) +
						    "; this virtsnap knows up to " + std::to_string(kSchemaVersion));
	};
	// Read first, without the write lock: a current catalog needs no write
	// (so a reader that cannot write still opens it).
	auto v = version();
	VS_TRY(v);
	if (*v > kSchemaVersion)
		return tooNew(*v);
	if (*v == kSchemaVersion)
		return {};
	// Under the write lock, checked again: another process may have
	// created it in between.
	return inTransaction(true, [&]() -> Result<void> {
		auto v2 = version();
		VS_TRY(v2);
		if (*v2 > kSchemaVersion)
			return tooNew(*v2);
		if (*v2 == kSchemaVersion)
			return {};
		VS_TRY(conn_.exec(kSchemaV1));
		return conn_.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion));
	});
}

Result<void> Catalog::checkTransaction() const
{
	if (depth_ > 0 && conn_.autocommit())
		return fail(errc::kIo, "catalog " + conn_.file().string() +
					       ": the transaction was rolled back after an earlier error");
	return {};
}

Result<void> Catalog::inTransaction(bool write, const std::function<Result<void>()> &body)
{
	VS_TRY(checkTransaction());
	std::string savepoint = "sp" + std::to_string(depth_);
	const bool outer = depth_ == 0;
	VS_TRY(conn_.exec(outer ? (write ? "BEGIN IMMEDIATE" : "BEGIN") : "SAVEPOINT " + savepoint));
	depth_++;
	auto rollback = [&] {
		// Nothing to undo when SQLite already rolled the whole
		// transaction back; the error that did it is what we return.
		if (!conn_.autocommit())
			(void)conn_.exec(outer ? "ROLLBACK" : "ROLLBACK TO " + savepoint + "; RELEASE " + savepoint);
		depth_--;
	};
	Result<void> r;
	try {
		r = body();
	} catch (...) {
		rollback();
		throw;
	}
	if (r)
		r = checkTransaction();
	if (r)
		r = conn_.exec(outer ? "COMMIT" : "RELEASE " + savepoint);
	if (!r) {
		rollback();
		return r;
	}
	depth_--;
	return {};
}

bool Catalog::isEmpty()
{
	std::lock_guard lock(mutex_);
	bool empty = true;
	auto r = inTransaction(false, [&]() -> Result<void> {
		auto st = conn_.cached("SELECT EXISTS (SELECT 1 FROM snapshots) OR EXISTS (SELECT 1 FROM volumes)");
		VS_TRY(st);
		auto row = st->step();
		VS_TRY(row);
		empty = !*row || st->integer(0) == 0;
		return {};
	});
	return !r || empty;
}

Result<void> Catalog::clear()
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		VS_TRY(conn_.exec("DELETE FROM tags; DELETE FROM snapshots; DELETE FROM volumes"));
		return {};
	});
}

Result<void> Catalog::transaction(const std::function<Result<void>()> &body)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, body);
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

Result<void> Catalog::putRequest(const RequestRow &row)
{
	std::lock_guard lock(mutex_);
	std::string now = isoTimeNow();
	return inTransaction(true, [&]() -> Result<void> {
		// Checked under the write lock, so the answer holds until the
		// insert: a conflict is told apart from an I/O error.
		auto exists = conn_.cached("SELECT 1 FROM requests WHERE client_token = ?");
		VS_TRY(exists);
		exists->bind(1, row.clientToken);
		auto found = exists->step();
		VS_TRY(found);
		if (*found)
			return fail(errc::kIncorrectState, "client token '" + row.clientToken + "' is already recorded");
		auto st = conn_.cached(
			"INSERT INTO requests (client_token, request_hash, response, created) VALUES (?, ?, ?, ?)");
		VS_TRY(st);
		st->bind(1, row.clientToken);
		st->bind(2, row.requestHash);
		st->bind(3, row.response);
		st->bind(4, row.created.empty() ? now : row.created);
		return st->run();
	});
}

Result<std::optional<RequestRow>> Catalog::getRequest(const std::string &clientToken)
{
	std::lock_guard lock(mutex_);
	std::optional<RequestRow> out;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		auto st = conn_.cached(
			"SELECT client_token, request_hash, response, created FROM requests WHERE client_token = ?");
		VS_TRY(st);
		st->bind(1, clientToken);
		auto row = st->step();
		VS_TRY(row);
		if (*row)
			out = RequestRow{st->text(0), st->text(1), st->text(2), st->text(3)};
		return {};
	}));
	return out;
}

Result<int> Catalog::pruneRequests(const std::string &createdBefore)
{
	std::lock_guard lock(mutex_);
	int removed = 0;
	VS_TRY(inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached("DELETE FROM requests WHERE created < ?");
		VS_TRY(st);
		st->bind(1, createdBefore);
		VS_TRY(st->run());
		removed = conn_.changes();
		return {};
	}));
	return removed;
}

} // namespace virtsnap::catalog
