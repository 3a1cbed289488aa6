// The catalog: an SQLite index (STORE/catalog.sqlite, WAL) of snapshots and
// volumes for fast queries, plus the daemon's job and request state. The
// store's manifests stay the source of truth: a rebuild is clear() and
// upserts inside one transaction().
//
// One Catalog is one connection, guarded by a mutex, so one instance may be
// shared by the daemon's threads; other processes (the CLI) open their own
// and read concurrently (WAL readers do not block the writer; busy_timeout
// covers the short waits for the write lock).
//
// The file holds descriptions and tags in the clear (manifests are
// encrypted); it is created with mode 0600 for that reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "catalog/statement.h"
#include "core/error.h"
#include "core/states.h"

namespace virtsnap::catalog {

using Tags = std::vector<std::pair<std::string, std::string>>;

struct SnapshotRow {
	std::string snapshotId, volumeId;
	SnapshotState state = SnapshotState::Pending;
	std::string stateMessage;
	int progress = 0;                         // 0..100
	std::string startTime, completionTime;    // ISO 8601 UTC, comparable as text
	std::string description, name, ownerId;
	std::string consistencyLevel = "crash";
	bool encrypted = false;                   // of an encrypted volume (manifest.h)
	std::string kmsKeyId;                     // its key; "" when not encrypted
	uint64_t volumeSize = 0;                  // bytes
	uint64_t bytesAdded = 0;
	uint64_t bytesRead = 0;                     // from the disk
	std::string snapshotSetId, parentSnapshotId, captureMode, captureReason, quiesceNote, diskId, instanceName;
	int64_t freezeMillis = -1;
	bool deleteRequested = false;             // delete of a pending snapshot: takes effect at completion
	std::string sourceSnapshotId;             // a copy's source
	std::string sourceStore;                  // a copy's source store's URL, when another store
	uint64_t bytesTransferred = 0;            // a copy: chunk bytes read from its source
	Tags tags;                                // in the order given to putSnapshot
	std::vector<std::string> productCodes;    // "ID:TYPE" (core/product_code.h)

	bool operator==(const SnapshotRow &) const = default;
};

struct VolumeRow {
	std::string volumeId, instanceKey, instanceName, diskId, volumeClass = "standard";
	std::string target; // how the instance is reached: hypervisor::Target::key()
	uint64_t size = 0;
	bool bitmapsSuspect = false; // read only: see markBitmapsSuspect
	bool encrypted = false;      // a LUKS image, or marked by modify-volume
	std::string kmsKeyId;        // the key its snapshots carry; "" when not encrypted
	Tags tags;
	std::vector<std::string> productCodes; // "ID:TYPE" (core/product_code.h): its snapshots carry them

	bool operator==(const VolumeRow &) const = default;
};

struct JobRow {
	std::string jobId;   // "job-" + hex
	std::string kind;    // "create-snapshots"
	JobState state = JobState::Running;
	std::vector<std::string> snapshotIds;
	std::string target;
	std::string details; // JSON text owned by the engine (what to clean up after a crash)
	int64_t pid = 0;
	std::string created, updated; // ISO 8601 UTC; putJob fills empty ones with now

	bool operator==(const JobRow &) const = default;
};

// An idempotency record: the response given to a client token.
struct RequestRow {
	std::string clientToken, requestHash, response;
	std::string created; // putRequest fills an empty one with now

	bool operator==(const RequestRow &) const = default;
};

// A lifecycle policy: its details are the JSON the daemon checked
// (daemon/lifecycle_policy.h); the catalog only keeps them.
struct PolicyRow {
	std::string policyId;    // "policy-" + hex
	std::string description;
	std::string state;       // ENABLED | DISABLED
	std::string details;     // PolicyDetails JSON
	std::string ownerId;
	std::string dateCreated, dateModified, schedulesFrom; // ISO 8601 UTC

	bool operator==(const PolicyRow &) const = default;
};

// One run of one schedule of a policy, and how it ended.
struct PolicyRunRow {
	std::string runId;
	std::string policyId, scheduleName;
	std::string startTime, endTime; // ISO 8601 UTC
	std::string outcome;            // succeeded | failed
	std::string message;            // why it failed
	std::vector<std::string> snapshotIds;
	// The CrossStoreCopyRules' part, JSON arrays as get-lifecycle-policy
	// shows them: each copy made or tried ({"SourceSnapshotId",
	// "TargetStore", "SnapshotId", "State", "Message"}), and each copy its
	// retention deleted from a target store ({"TargetStore", "SnapshotId"}).
	std::string copies = "[]";
	std::string deletedCopies = "[]";

	bool operator==(const PolicyRunRow &) const = default;
};

// An EC2 filter: one name, values OR-ed; filters are AND-ed.
struct Filter {
	std::string name;
	std::vector<std::string> values;
};

// Which snapshots an account may see (daemon/access.h): those whose
// owner_id is one of `owners`, or whose id is one of `snapshotIds`.
struct Scope {
	std::vector<std::string> owners;
	std::vector<std::string> snapshotIds;
};

struct Page {
	std::vector<SnapshotRow> snapshots;
	std::string nextToken; // "" on the last page
};

class Catalog
{
public:
	static constexpr int kSchemaVersion = 8;

	// Opens `file`, creating it (mode 0600) and its schema if needed; WAL,
	// synchronous=FULL, busy_timeout 5000 ms. StoreCorrupted for a schema
	// newer than kSchemaVersion (a newer virtsnap wrote it), IOError for
	// anything SQLite refuses, with its message and the path.
	static Result<std::unique_ptr<Catalog>> open(const std::filesystem::path &file);
	~Catalog();

	const std::filesystem::path &file() const { return conn_.file(); }

	// No snapshots and no volumes: the cue to rebuild from manifests. True
	// as well when the catalog cannot be read, so that the rebuild, which
	// reports errors, runs and says what is wrong.
	bool isEmpty();
	// For a rebuild: removes snapshots, volumes and tags; jobs and
	// requests stay (they are not in the manifests).
	Result<void> clear();
	// Runs `body` in one write transaction (BEGIN IMMEDIATE .. COMMIT);
	// when it fails, nothing it wrote stays and its error is returned.
	// Nests (as a savepoint). The calling thread holds the catalog for the
	// whole body: other threads' calls wait, and see all of it or none.
	Result<void> transaction(const std::function<Result<void>()> &body);

	// Upsert, replacing the snapshot's tags with row.tags (a repeated key
	// keeps its first position and its last value).
	Result<void> putSnapshot(const SnapshotRow &row);
	Result<std::optional<SnapshotRow>> getSnapshot(const std::string &id);
	// Removes the snapshot and its tags; no error when it is not there.
	Result<void> removeSnapshot(const std::string &id);
	// EC2 DescribeSnapshots. Filters: status, volume-id, snapshot-id,
	// description, owner-id, start-time, encrypted, progress ("80%"),
	// volume-size (GiB, rounded up), tag:KEY, tag-key; values take the `*`
	// and `?` wildcards, case-sensitive. A start-time value to the second
	// ("...T10:00:00Z") also matches the times within that second.
	// snapshotIds restricts to those ids; one that does not exist is
	// InvalidSnapshot.NotFound. Ordered by start time, then id. maxResults
	// 0: all; else 5..1000 per page, continued with the page's nextToken.
	// Every scope given must hold for a snapshot to be listed.
	Result<Page> describeSnapshots(const std::vector<Filter> &filters, const std::vector<std::string> &snapshotIds,
				       int maxResults, const std::string &nextToken,
				       const std::vector<Scope> &scopes = {});
	// Snapshots of the volume in state "pending".
	Result<int> countPending(const std::string &volumeId);

	// Upsert, replacing the volume's tags with row.tags.
	Result<void> putVolume(const VolumeRow &row);
	// The instance stopped (libvirt's hook said so): whatever its bitmaps
	// say is re-examined by the next snapshot, which clears the mark.
	Result<void> markBitmapsSuspect(const std::string &instanceKey);
	Result<void> clearBitmapsSuspect(const std::string &volumeId);
	Result<std::optional<VolumeRow>> getVolume(const std::string &id);
	// All volumes, or those of `ids` that exist; by volume id.
	Result<std::vector<VolumeRow>> listVolumes(const std::vector<std::string> &ids = {});
	Result<void> removeVolume(const std::string &id);

	Result<void> putJob(const JobRow &row);
	Result<std::optional<JobRow>> getJob(const std::string &id);
	// By creation time, then id.
	Result<std::vector<JobRow>> jobsInState(JobState state);
	Result<void> removeJob(const std::string &id);

	// Insert only: a token already recorded is IncorrectState (the caller
	// raced another request with the same token; read it with getRequest).
	Result<void> putRequest(const RequestRow &row);
	Result<std::optional<RequestRow>> getRequest(const std::string &clientToken);
	// Forgets requests created before `created` (ISO 8601); returns how many.
	Result<int> pruneRequests(const std::string &createdBefore);

	// Upsert.
	Result<void> putPolicy(const PolicyRow &row);
	Result<std::optional<PolicyRow>> getPolicy(const std::string &id);
	// By creation time, then id.
	Result<std::vector<PolicyRow>> listPolicies();
	// The policy and its runs; no error when it is not there.
	Result<void> removePolicy(const std::string &id);
	// Upsert; a schedule keeps its newest kPolicyRunsKept runs, so an
	// hourly policy does not grow the catalog forever.
	static constexpr int kPolicyRunsKept = 100;
	Result<void> putPolicyRun(const PolicyRunRow &row);
	// The newest `limit` runs of one schedule, newest first.
	Result<std::vector<PolicyRunRow>> policyRuns(const std::string &policyId, const std::string &scheduleName,
						     int limit);

private:
	explicit Catalog(Connection conn) : conn_(std::move(conn)) {}

	Result<void> initSchema();
	// Runs `body` in a transaction (or savepoint when one is open); the
	// mutex must be held. `write`: BEGIN IMMEDIATE, else a deferred read
	// transaction, so several statements see one state of the file.
	Result<void> inTransaction(bool write, const std::function<Result<void>()> &body);
	// Runs `body`, which returns a Result, in a read transaction under the
	// mutex, and returns what it returned.
	template<typename Body>
	auto reading(const Body &body) -> decltype(body())
	{
		std::lock_guard lock(mutex_);
		decltype(body()) out;
		VS_TRY(inTransaction(false, [&]() -> Result<void> {
			out = body();
			if (!out)
				return std::unexpected(out.error());
			return {};
		}));
		return out;
	}
	// Fails when a transaction this catalog opened was rolled back by
	// SQLite itself (I/O error, full disk): statements would otherwise run
	// in autocommit mode, outside the transaction.
	Result<void> checkTransaction() const;

	std::recursive_mutex mutex_;
	Connection conn_;
	int depth_ = 0; // open transactions and savepoints
};

} // namespace virtsnap::catalog
