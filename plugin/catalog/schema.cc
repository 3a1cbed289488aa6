// The catalog's schema: its creation, and the version check that refuses a
// file written by a newer virtsnap. Migrations from older versions go here.
#include "catalog.h"

#include <string>

namespace virtsnap::catalog {

namespace {

// Version 1. Each later version is the step from the one before; a file
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

// Version 2: lifecycle policies and their runs. The daemon's own state,
// like jobs and requests: no manifest holds it, so clear() leaves it.
constexpr const char *kSchemaV2 = R"sql(
CREATE TABLE policies (
	policy_id TEXT PRIMARY KEY NOT NULL,
	description TEXT NOT NULL,
	state TEXT NOT NULL,
	details TEXT NOT NULL, -- PolicyDetails, JSON as DLM shapes it
	owner_id TEXT NOT NULL,
	date_created TEXT NOT NULL,
	date_modified TEXT NOT NULL,
	-- Schedules count their slots from here: creation, and each time the
	-- policy is enabled or its details change.
	schedules_from TEXT NOT NULL
);

CREATE TABLE policy_runs (
	run_id TEXT PRIMARY KEY NOT NULL,
	policy_id TEXT NOT NULL,
	schedule_name TEXT NOT NULL,
	start_time TEXT NOT NULL,
	end_time TEXT NOT NULL,
	outcome TEXT NOT NULL,
	message TEXT NOT NULL,
	snapshot_ids TEXT NOT NULL -- JSON array of strings
);
CREATE INDEX policy_runs_by_schedule ON policy_runs (policy_id, schedule_name, start_time, run_id);
)sql";

// Version 3: snapshots' product codes, a JSON array of "ID:TYPE". Rows from
// before have none, as their manifests have none.
constexpr const char *kSchemaV3 = R"sql(
ALTER TABLE snapshots ADD COLUMN product_codes TEXT NOT NULL DEFAULT '[]';
)sql";

// Version 4: what a copy shows of its origin and what it moved. The
// manifest holds them too (FORMAT.md), so a rebuild finds them again.
constexpr const char *kSchemaV4 = R"sql(
ALTER TABLE snapshots ADD COLUMN source_snapshot_id TEXT NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN source_store TEXT NOT NULL DEFAULT '';
ALTER TABLE snapshots ADD COLUMN bytes_transferred INTEGER NOT NULL DEFAULT 0;
)sql";

// Version 5: what a run's CrossStoreCopyRules copied into other stores and
// deleted there (JSON arrays); runs from before copied nothing.
constexpr const char *kSchemaV5 = R"sql(
ALTER TABLE policy_runs ADD COLUMN copies TEXT NOT NULL DEFAULT '[]';
ALTER TABLE policy_runs ADD COLUMN deleted_copies TEXT NOT NULL DEFAULT '[]';
)sql";

// Version 6: encrypted volumes (issue 12). Rows from before are of
// unencrypted volumes: no manifest said otherwise.
constexpr const char *kSchemaV6 = R"sql(
ALTER TABLE snapshots ADD COLUMN kms_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE volumes ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE volumes ADD COLUMN kms_key_id TEXT NOT NULL DEFAULT '';
UPDATE snapshots SET encrypted = 0;
)sql";

// Version 7: owner_id is the owning account (12 digits; daemon/access.h),
// no longer the requesting uid. Rows from before name a uid: their
// snapshots belong to the store's default account, which an empty owner
// means (as a manifest without account_id does).
constexpr const char *kSchemaV7 = R"sql(
UPDATE snapshots SET owner_id = '' WHERE NOT (length(owner_id) = 12 AND owner_id NOT GLOB '*[^0-9]*');
)sql";

// Version 8: volumes' product codes (a JSON array of "ID:TYPE"), those
// of the snapshots they were restored from. Rows from before have none:
// their store records had none either.
constexpr const char *kSchemaV8 = R"sql(
ALTER TABLE volumes ADD COLUMN product_codes TEXT NOT NULL DEFAULT '[]';
)sql";

// The file's schema version: 0 for a new file. A newer one than this
// code's is StoreCorrupted: refused rather than misread.
Result<int64_t> versionOf(Connection &conn)
{
	VS_ASSIGN(Statement st, conn.prepare("PRAGMA user_version"));
	VS_ASSIGN(bool row, st.step());
	int64_t version = row ? st.integer(0) : 0;
	if (version > Catalog::kSchemaVersion)
		return fail(errc::kCorrupt, "catalog " + conn.file().string() + " has schema version " +
						    std::to_string(version) + "; this virtsnap knows up to " +
						    std::to_string(Catalog::kSchemaVersion));
	return version;
}

} // namespace

Result<void> Catalog::initSchema()
{
	std::lock_guard lock(mutex_);
	// Read first, without the write lock: a current catalog needs no write
	// (so a reader that cannot write still opens it).
	VS_ASSIGN(int64_t version, versionOf(conn_));
	if (version == kSchemaVersion)
		return {};
	// Under the write lock, checked again: another process may have
	// created or migrated it in between. Each step brings the file one
	// version on, so a version 1 catalog keeps its rows.
	return inTransaction(true, [&]() -> Result<void> {
		VS_ASSIGN(int64_t now, versionOf(conn_));
		if (now < 1)
			VS_TRY(conn_.exec(kSchemaV1));
		if (now < 2)
			VS_TRY(conn_.exec(kSchemaV2));
		if (now < 3)
			VS_TRY(conn_.exec(kSchemaV3));
		if (now < 4)
			VS_TRY(conn_.exec(kSchemaV4));
		if (now < 5)
			VS_TRY(conn_.exec(kSchemaV5));
		if (now < 6)
			VS_TRY(conn_.exec(kSchemaV6));
		if (now < 7)
			VS_TRY(conn_.exec(kSchemaV7));
		if (now < 8)
			VS_TRY(conn_.exec(kSchemaV8));
		return conn_.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion));
	});
}

} // namespace virtsnap::catalog
