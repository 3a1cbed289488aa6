// The catalog's rows: schema creation and versioning, every field of every
// row type through a write and a read (and a reopen), upserts, removal,
// transactions, clear() for a rebuild, and idempotency records.
#include <sys/stat.h>

#include <fstream>

#include "catalog_test_util.h"

namespace virtsnap::catalog::test {
namespace {

using CatalogTest = CatalogDirTest;

VolumeRow fullVolume(unsigned n)
{
	VolumeRow v;
	v.volumeId = volId(n);
	v.instanceKey = "uuid:5f0c6e8a-0d7e-4b0e-9a55-" + std::to_string(100000000000 + n);
	v.instanceName = "vm-\u00e9-" + std::to_string(n);
	v.diskId = "vdb";
	v.volumeClass = "st1";
	v.target = "/run/vm" + std::to_string(n) + ".qmp";
	v.size = (uint64_t(1) << 40) + n;
	v.encrypted = true;
	v.kmsKeyId = "8899aabbccddee" + std::to_string(10 + n % 90);
	v.tags = {{"team", "storage"}, {"Name", "disk \u2603"}};
	v.productCodes = {"abc123:marketplace", "dp" + std::to_string(n) + ":devpay"};
	return v;
}

JobRow fullJob(unsigned n, const std::string &state = "running")
{
	JobRow j;
	j.jobId = "job-" + std::to_string(1000 + n);
	j.kind = "create-snapshots";
	j.state = jobStateNamed(state).value();
	j.snapshotIds = {snapId(n), snapId(n + 1), "odd \"id\" \u00fc\\"};
	j.target = "/run/vm.qmp";
	j.details = R"({"bitmaps":["snap-a"],"scratch":"/tmp/x"})";
	j.pid = 4242 + n;
	j.created = isoTime(n);
	j.updated = isoTime(n + 1);
	return j;
}

TEST_F(CatalogTest, OpenCreatesVersionedSchemaInWalMode)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	EXPECT_EQ(cat->file(), file());
	struct stat st{};
	ASSERT_EQ(::stat(file().c_str(), &st), 0);
	// Descriptions and tags are in the clear here: owner only.
	EXPECT_EQ(st.st_mode & 0777, 0600u);

	ASSERT_TRUE(cat->putSnapshot(fullSnapshot(1)));
	// While open, WAL keeps its two side files next to the database.
	EXPECT_TRUE(fs::exists(root_ / "catalog.sqlite-wal"));
	EXPECT_TRUE(fs::exists(root_ / "catalog.sqlite-shm"));

	RawDb raw(file());
	EXPECT_EQ(raw.query("PRAGMA journal_mode"), "wal");
	EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(Catalog::kSchemaVersion));
	for (const char *table : {"snapshots", "volumes", "tags", "jobs", "requests", "policies", "policy_runs"})
		EXPECT_EQ(raw.query(std::string("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '") + table + "'"),
			  table);
	// The two indexes the queries rely on, with their columns in order.
	EXPECT_EQ(raw.query("SELECT group_concat(name, ',') FROM pragma_index_info('snapshots_by_volume_state')"),
		  "volume_id,state");
	EXPECT_EQ(raw.query("SELECT group_concat(name, ',') FROM pragma_index_info('snapshots_by_start')"),
		  "start_time,snapshot_id");
	EXPECT_EQ(raw.query("SELECT group_concat(name, ',') FROM pragma_table_info('tags')"),
		  "resource_id,key,value,position");
}

TEST_F(CatalogTest, ReopenKeepsEveryRow)
{
	RequestRow req{"token-1", "hash-1", R"({"Snapshots":[]})", isoTime(5)};
	{
		auto cat = openCatalog();
		ASSERT_TRUE(cat);
		ASSERT_TRUE(cat->putSnapshot(fullSnapshot(1)));
		ASSERT_TRUE(cat->putVolume(fullVolume(1)));
		ASSERT_TRUE(cat->putJob(fullJob(1)));
		ASSERT_TRUE(cat->putRequest(req));
	}
	// The last connection checkpoints the WAL into the database on close.
	EXPECT_FALSE(fs::exists(root_ / "catalog.sqlite-wal"));
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	EXPECT_FALSE(cat->isEmpty());
	auto s = cat->getSnapshot(snapId(1));
	ASSERT_TRUE(s && *s) << describe(s);
	EXPECT_EQ(**s, fullSnapshot(1));
	auto v = cat->getVolume(volId(1));
	ASSERT_TRUE(v && *v) << describe(v);
	EXPECT_EQ(**v, fullVolume(1));
	auto j = cat->getJob(fullJob(1).jobId);
	ASSERT_TRUE(j && *j) << describe(j);
	EXPECT_EQ(**j, fullJob(1));
	auto r = cat->getRequest("token-1");
	ASSERT_TRUE(r && *r) << describe(r);
	EXPECT_EQ(**r, req);
	RawDb raw(file());
	EXPECT_EQ(raw.query("PRAGMA journal_mode"), "wal");
}

TEST_F(CatalogTest, SnapshotRoundTripsEveryField)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	SnapshotRow full = fullSnapshot(7);
	SnapshotRow defaults;
	defaults.snapshotId = snapId(8);
	SnapshotRow extremes = fullSnapshot(9);
	extremes.volumeSize = UINT64_MAX;
	extremes.bytesAdded = 0;
	extremes.freezeMillis = -1;
	extremes.progress = 0;
	extremes.encrypted = false;
	extremes.kmsKeyId = "";
	extremes.deleteRequested = false;
	extremes.description = std::string("nul\0inside", 10) + " 'quoted' -- ; DROP TABLE snapshots";
	extremes.tags = {};
	for (const SnapshotRow &row : {full, defaults, extremes}) {
		ASSERT_TRUE(cat->putSnapshot(row));
		auto got = cat->getSnapshot(row.snapshotId);
		ASSERT_TRUE(got) << describe(got);
		ASSERT_TRUE(got->has_value()) << row.snapshotId;
		EXPECT_EQ(**got, row) << row.snapshotId;
	}
	// Each field on its own, so a failure names the one that was lost.
	auto got = cat->getSnapshot(full.snapshotId);
	ASSERT_TRUE(got && *got);
	const SnapshotRow &g = **got;
	EXPECT_EQ(g.volumeId, full.volumeId);
	EXPECT_EQ(g.state, full.state);
	EXPECT_EQ(g.stateMessage, full.stateMessage);
	EXPECT_EQ(g.progress, full.progress);
	EXPECT_EQ(g.startTime, full.startTime);
	EXPECT_EQ(g.completionTime, full.completionTime);
	EXPECT_EQ(g.description, full.description);
	EXPECT_EQ(g.name, full.name);
	EXPECT_EQ(g.ownerId, full.ownerId);
	EXPECT_EQ(g.consistencyLevel, full.consistencyLevel);
	EXPECT_EQ(g.encrypted, full.encrypted);
	EXPECT_EQ(g.kmsKeyId, full.kmsKeyId);
	EXPECT_EQ(g.volumeSize, full.volumeSize);
	EXPECT_EQ(g.bytesAdded, full.bytesAdded);
	EXPECT_EQ(g.snapshotSetId, full.snapshotSetId);
	EXPECT_EQ(g.parentSnapshotId, full.parentSnapshotId);
	EXPECT_EQ(g.captureMode, full.captureMode);
	EXPECT_EQ(g.captureReason, full.captureReason);
	EXPECT_EQ(g.quiesceNote, full.quiesceNote);
	EXPECT_EQ(g.diskId, full.diskId);
	EXPECT_EQ(g.instanceName, full.instanceName);
	EXPECT_EQ(g.freezeMillis, full.freezeMillis);
	EXPECT_EQ(g.deleteRequested, full.deleteRequested);
	EXPECT_EQ(g.tags, full.tags);

	auto none = cat->getSnapshot(snapId(99));
	ASSERT_TRUE(none) << describe(none);
	EXPECT_FALSE(none->has_value());
}

TEST_F(CatalogTest, PutSnapshotUpsertsAndReplacesTags)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	SnapshotRow row = fullSnapshot(1);
	row.state = SnapshotState::Pending;
	row.progress = 10;
	ASSERT_TRUE(cat->putSnapshot(row));

	row.state = SnapshotState::Completed;
	row.progress = 100;
	row.completionTime = isoTime(500);
	row.tags = {{"env", "dev"}, {"new", ""}};
	ASSERT_TRUE(cat->putSnapshot(row));
	auto got = cat->getSnapshot(row.snapshotId);
	ASSERT_TRUE(got && *got) << describe(got);
	EXPECT_EQ(**got, row);
	RawDb raw(file());
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM snapshots"), "1");
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM tags WHERE resource_id = '" + row.snapshotId + "'"), "2");

	// A repeated key: one tag, first position, last value.
	row.tags = {{"a", "1"}, {"b", "2"}, {"a", "3"}};
	ASSERT_TRUE(cat->putSnapshot(row));
	got = cat->getSnapshot(row.snapshotId);
	ASSERT_TRUE(got && *got) << describe(got);
	EXPECT_EQ((*got)->tags, (Tags{{"a", "3"}, {"b", "2"}}));
}

TEST_F(CatalogTest, RemoveSnapshotTakesItsTags)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	ASSERT_TRUE(cat->putSnapshot(fullSnapshot(1)));
	ASSERT_TRUE(cat->putSnapshot(fullSnapshot(2)));
	ASSERT_TRUE(cat->removeSnapshot(snapId(1)));
	auto gone = cat->getSnapshot(snapId(1));
	ASSERT_TRUE(gone) << describe(gone);
	EXPECT_FALSE(gone->has_value());
	auto kept = cat->getSnapshot(snapId(2));
	ASSERT_TRUE(kept && *kept) << describe(kept);
	EXPECT_EQ(**kept, fullSnapshot(2));
	RawDb raw(file());
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM tags WHERE resource_id = '" + snapId(1) + "'"), "0");

	// Put again without tags: none of the old ones come back.
	SnapshotRow again = fullSnapshot(1);
	again.tags.clear();
	ASSERT_TRUE(cat->putSnapshot(again));
	auto back = cat->getSnapshot(snapId(1));
	ASSERT_TRUE(back && *back) << describe(back);
	EXPECT_TRUE((*back)->tags.empty());

	// Removing what is not there is not an error.
	EXPECT_TRUE(cat->removeSnapshot(snapId(77)));
}

TEST_F(CatalogTest, VolumesRoundTripUpsertListAndRemove)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	VolumeRow defaults;
	defaults.volumeId = volId(9);
	for (unsigned n : {3u, 1u, 2u})
		ASSERT_TRUE(cat->putVolume(fullVolume(n)));
	ASSERT_TRUE(cat->putVolume(defaults));

	auto v = cat->getVolume(volId(2));
	ASSERT_TRUE(v && *v) << describe(v);
	EXPECT_EQ(**v, fullVolume(2));
	auto d = cat->getVolume(volId(9));
	ASSERT_TRUE(d && *d) << describe(d);
	EXPECT_EQ(**d, defaults);
	EXPECT_EQ((*d)->volumeClass, "standard");
	auto missing = cat->getVolume(volId(50));
	ASSERT_TRUE(missing) << describe(missing);
	EXPECT_FALSE(missing->has_value());

	auto all = cat->listVolumes();
	ASSERT_TRUE(all) << describe(all);
	ASSERT_EQ(all->size(), 4u);
	EXPECT_EQ((*all)[0], fullVolume(1));
	EXPECT_EQ((*all)[1], fullVolume(2));
	EXPECT_EQ((*all)[2], fullVolume(3));
	EXPECT_EQ((*all)[3], defaults);

	auto some = cat->listVolumes({volId(3), volId(50), volId(1)});
	ASSERT_TRUE(some) << describe(some);
	ASSERT_EQ(some->size(), 2u);
	EXPECT_EQ((*some)[0].volumeId, volId(1));
	EXPECT_EQ((*some)[1].volumeId, volId(3));

	VolumeRow changed = fullVolume(2);
	changed.volumeClass = "sc1";
	changed.size = 5;
	changed.target = "/run/other.qmp";
	changed.tags = {{"only", "one"}};
	ASSERT_TRUE(cat->putVolume(changed));
	v = cat->getVolume(volId(2));
	ASSERT_TRUE(v && *v) << describe(v);
	EXPECT_EQ(**v, changed);

	ASSERT_TRUE(cat->removeVolume(volId(2)));
	v = cat->getVolume(volId(2));
	ASSERT_TRUE(v) << describe(v);
	EXPECT_FALSE(v->has_value());
	RawDb raw(file());
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM tags WHERE resource_id = '" + volId(2) + "'"), "0");
}

TEST_F(CatalogTest, JobsRoundTripAndListByState)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	// Put out of creation order: jobsInState sorts by created.
	ASSERT_TRUE(cat->putJob(fullJob(3)));
	ASSERT_TRUE(cat->putJob(fullJob(1)));
	ASSERT_TRUE(cat->putJob(fullJob(2, "done")));
	// Created first, though its id sorts last.
	JobRow early = fullJob(5);
	early.created = isoTime(0);
	ASSERT_TRUE(cat->putJob(early));
	JobRow empty;
	empty.jobId = "job-ffff";
	empty.state = JobState::Failed;
	ASSERT_TRUE(cat->putJob(empty));

	auto j = cat->getJob(fullJob(1).jobId);
	ASSERT_TRUE(j && *j) << describe(j);
	EXPECT_EQ(**j, fullJob(1));
	EXPECT_EQ((*j)->snapshotIds.size(), 3u);
	EXPECT_EQ((*j)->snapshotIds[2], "odd \"id\" \u00fc\\");

	// Times left empty are filled with now.
	auto e = cat->getJob("job-ffff");
	ASSERT_TRUE(e && *e) << describe(e);
	EXPECT_TRUE((*e)->snapshotIds.empty());
	EXPECT_EQ((*e)->created.size(), 24u) << (*e)->created;
	EXPECT_EQ((*e)->updated.size(), 24u) << (*e)->updated;
	EXPECT_EQ((*e)->created.back(), 'Z');

	auto running = cat->jobsInState(JobState::Running);
	ASSERT_TRUE(running) << describe(running);
	ASSERT_EQ(running->size(), 3u);
	EXPECT_EQ((*running)[0], early);
	EXPECT_EQ((*running)[1], fullJob(1));
	EXPECT_EQ((*running)[2], fullJob(3));

	// An update moves a job from one state to another.
	JobRow interrupted = fullJob(1, "interrupted");
	interrupted.updated = isoTime(90);
	ASSERT_TRUE(cat->putJob(interrupted));
	running = cat->jobsInState(JobState::Running);
	ASSERT_TRUE(running) << describe(running);
	ASSERT_EQ(running->size(), 2u);
	EXPECT_EQ((*running)[0].jobId, early.jobId);
	EXPECT_EQ((*running)[1].jobId, fullJob(3).jobId);
	auto inter = cat->jobsInState(JobState::Interrupted);
	ASSERT_TRUE(inter) << describe(inter);
	ASSERT_EQ(inter->size(), 1u);
	EXPECT_EQ((*inter)[0], interrupted);
	auto done = cat->jobsInState(JobState::Done);
	ASSERT_TRUE(done) << describe(done);
	ASSERT_EQ(done->size(), 1u);
	auto none = cat->jobsInState(JobState::Failed);
	ASSERT_TRUE(none) << describe(none);
	ASSERT_EQ(none->size(), 1u);
	EXPECT_EQ((*none)[0].jobId, "job-ffff");

	ASSERT_TRUE(cat->removeJob(fullJob(3).jobId));
	auto gone = cat->getJob(fullJob(3).jobId);
	ASSERT_TRUE(gone) << describe(gone);
	EXPECT_FALSE(gone->has_value());
}

TEST_F(CatalogTest, RequestsByClientToken)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	RequestRow a{"tok-\u00e4", "sha256:aaa", R"({"SnapshotId":"snap-1"})", isoTime(10)};
	RequestRow b{"tok-b", "sha256:bbb", "{}", ""};
	ASSERT_TRUE(cat->putRequest(a));
	ASSERT_TRUE(cat->putRequest(b));

	auto got = cat->getRequest(a.clientToken);
	ASSERT_TRUE(got && *got) << describe(got);
	EXPECT_EQ(**got, a);
	auto gotB = cat->getRequest("tok-b");
	ASSERT_TRUE(gotB && *gotB) << describe(gotB);
	EXPECT_EQ((*gotB)->requestHash, "sha256:bbb");
	EXPECT_EQ((*gotB)->created.size(), 24u) << "created filled with now";
	auto none = cat->getRequest("tok-x");
	ASSERT_TRUE(none) << describe(none);
	EXPECT_FALSE(none->has_value());

	// A token is recorded once; the first record stays.
	RequestRow dup{a.clientToken, "sha256:other", "other", isoTime(11)};
	auto r = cat->putRequest(dup);
	EXPECT_EQ(codeOf(r), errc::kIncorrectState);
	EXPECT_NE(r.error().message.find(a.clientToken), std::string::npos) << r.error().message;
	got = cat->getRequest(a.clientToken);
	ASSERT_TRUE(got && *got) << describe(got);
	EXPECT_EQ(**got, a);

	// Pruning removes what is older than the cut only.
	auto pruned = cat->pruneRequests(isoTime(11));
	ASSERT_TRUE(pruned) << describe(pruned);
	EXPECT_EQ(*pruned, 1);
	got = cat->getRequest(a.clientToken);
	ASSERT_TRUE(got) << describe(got);
	EXPECT_FALSE(got->has_value());
	gotB = cat->getRequest("tok-b");
	ASSERT_TRUE(gotB && *gotB) << "created now, after the cut";
}

// States are names in the file and enums in the code: a name the code does
// not know (a newer virtsnap wrote it, or damage) never passes for a state.
TEST_F(CatalogTest, UnknownStateNamesAreDamage)
{
	{
		auto cat = openCatalog();
		ASSERT_TRUE(cat);
		ASSERT_TRUE(cat->putSnapshot(fullSnapshot(1)));
		ASSERT_TRUE(cat->putJob(fullJob(1)));
	}
	{
		RawDb raw(file());
		raw.exec("UPDATE snapshots SET state = 'archived'");
		raw.exec("UPDATE jobs SET state = 'paused'");
	}
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	auto row = cat->getSnapshot(snapId(1));
	ASSERT_TRUE(row && *row) << describe(row);
	EXPECT_EQ((*row)->state, SnapshotState::Error);
	EXPECT_NE((*row)->stateMessage.find("unknown state 'archived'"), std::string::npos) << (*row)->stateMessage;
	auto job = cat->getJob(fullJob(1).jobId);
	ASSERT_FALSE(job);
	EXPECT_EQ(job.error().code, errc::kCorrupt);
	EXPECT_NE(job.error().message.find("unknown state 'paused'"), std::string::npos) << job.error().message;
}

// bitmaps_suspect is written by its own setters only: a put of what a
// snapshot learnt must not undo a stop the hypervisor's hook reported.
TEST_F(CatalogTest, BitmapsSuspectOutlivesPutVolume)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	ASSERT_TRUE(cat->putVolume(fullVolume(1)));
	ASSERT_TRUE(cat->putVolume(fullVolume(2)));
	ASSERT_TRUE(cat->markBitmapsSuspect(fullVolume(1).instanceKey));

	VolumeRow put = fullVolume(1);
	put.size = 7;
	ASSERT_TRUE(cat->putVolume(put));
	auto v = cat->getVolume(volId(1));
	ASSERT_TRUE(v && *v) << describe(v);
	EXPECT_TRUE((*v)->bitmapsSuspect);
	EXPECT_EQ((*v)->size, 7u);
	auto other = cat->getVolume(volId(2));
	ASSERT_TRUE(other && *other) << describe(other);
	EXPECT_FALSE((*other)->bitmapsSuspect) << "another instance's volume";

	ASSERT_TRUE(cat->clearBitmapsSuspect(volId(1)));
	v = cat->getVolume(volId(1));
	ASSERT_TRUE(v && *v) << describe(v);
	EXPECT_FALSE((*v)->bitmapsSuspect);
}

// A job's snapshot ids are a JSON array of strings; anything else is damage,
// named with the file and the job.
TEST_F(CatalogTest, DamagedJobSnapshotIdsAreCorrupt)
{
	{
		auto cat = openCatalog();
		ASSERT_TRUE(cat);
		ASSERT_TRUE(cat->putJob(fullJob(1)));
		ASSERT_TRUE(cat->putJob(fullJob(2)));
	}
	{
		RawDb raw(file());
		raw.exec("UPDATE jobs SET snapshot_ids = '{\"a\": 1}' WHERE job_id = '" + fullJob(1).jobId + "'");
		raw.exec("UPDATE jobs SET snapshot_ids = '[\"snap-a\", 7]' WHERE job_id = '" + fullJob(2).jobId + "'");
	}
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	auto notArray = cat->getJob(fullJob(1).jobId);
	ASSERT_FALSE(notArray);
	EXPECT_EQ(notArray.error().code, errc::kCorrupt);
	EXPECT_EQ(notArray.error().message,
		  "catalog " + file().string() + ": job " + fullJob(1).jobId + ": snapshot_ids: not a JSON array");
	auto notString = cat->getJob(fullJob(2).jobId);
	ASSERT_FALSE(notString);
	EXPECT_EQ(notString.error().code, errc::kCorrupt);
	EXPECT_EQ(notString.error().message,
		  "catalog " + file().string() + ": job " + fullJob(2).jobId + ": snapshot_ids: holds something other than strings");
	// Listing fails as well rather than leave a job out.
	auto running = cat->jobsInState(JobState::Running);
	ASSERT_FALSE(running);
	EXPECT_EQ(running.error().code, errc::kCorrupt);
}

TEST_F(CatalogTest, CountPendingPerVolume)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	const char *states[] = {"pending", "completed", "pending", "error", "pending"};
	for (unsigned i = 0; i < 5; i++)
		ASSERT_TRUE(cat->putSnapshot(snapshot(i, volId(1), states[i], isoTime(i))));
	ASSERT_TRUE(cat->putSnapshot(snapshot(10, volId(2), "pending", isoTime(10))));
	auto one = cat->countPending(volId(1));
	ASSERT_TRUE(one) << describe(one);
	EXPECT_EQ(*one, 3);
	auto two = cat->countPending(volId(2));
	ASSERT_TRUE(two) << describe(two);
	EXPECT_EQ(*two, 1);
	auto none = cat->countPending(volId(3));
	ASSERT_TRUE(none) << describe(none);
	EXPECT_EQ(*none, 0);

	SnapshotRow done = snapshot(0, volId(1), "completed", isoTime(0));
	ASSERT_TRUE(cat->putSnapshot(done));
	one = cat->countPending(volId(1));
	ASSERT_TRUE(one) << describe(one);
	EXPECT_EQ(*one, 2);
}

TEST_F(CatalogTest, FailedTransactionWritesNothing)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	ASSERT_TRUE(cat->putSnapshot(fullSnapshot(1)));
	auto r = cat->transaction([&]() -> Result<void> {
		SnapshotRow changed = fullSnapshot(1);
		changed.state = SnapshotState::Error;
		changed.tags = {};
		VS_TRY(cat->putSnapshot(changed));
		VS_TRY(cat->putSnapshot(fullSnapshot(2)));
		VS_TRY(cat->putVolume(fullVolume(2)));
		VS_TRY(cat->putJob(fullJob(2)));
		VS_TRY(cat->putRequest({"tok", "h", "r", ""}));
		VS_TRY(cat->removeSnapshot(snapId(1)));
		// The writes are visible inside, to the same thread.
		auto inside = cat->getSnapshot(snapId(2));
		VS_TRY(inside);
		if (!*inside)
			return fail(errc::kInternal, "write not visible inside the transaction");
		return fail(errc::kHypervisor, "disk vdb went away");
	});
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kHypervisor);
	EXPECT_EQ(r.error().message, "disk vdb went away");

	auto s1 = cat->getSnapshot(snapId(1));
	ASSERT_TRUE(s1 && *s1) << describe(s1);
	EXPECT_EQ(**s1, fullSnapshot(1)) << "the update and the removal are undone";
	auto s2 = cat->getSnapshot(snapId(2));
	ASSERT_TRUE(s2) << describe(s2);
	EXPECT_FALSE(s2->has_value());
	auto v = cat->getVolume(volId(2));
	ASSERT_TRUE(v) << describe(v);
	EXPECT_FALSE(v->has_value());
	auto j = cat->getJob(fullJob(2).jobId);
	ASSERT_TRUE(j) << describe(j);
	EXPECT_FALSE(j->has_value());
	auto q = cat->getRequest("tok");
	ASSERT_TRUE(q) << describe(q);
	EXPECT_FALSE(q->has_value());

	// The catalog works normally afterwards.
	ASSERT_TRUE(cat->putSnapshot(fullSnapshot(3)));
	auto s3 = cat->getSnapshot(snapId(3));
	ASSERT_TRUE(s3 && *s3) << describe(s3);
}

TEST_F(CatalogTest, TransactionCommitsAndNests)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	auto r = cat->transaction([&]() -> Result<void> {
		VS_TRY(cat->putSnapshot(fullSnapshot(1)));
		// A failing inner transaction undoes only its own writes.
		auto inner = cat->transaction([&]() -> Result<void> {
			VS_TRY(cat->putSnapshot(fullSnapshot(2)));
			return fail(errc::kIo, "inner failure");
		});
		if (inner)
			return fail(errc::kInternal, "inner transaction did not fail");
		VS_TRY(cat->transaction([&]() -> Result<void> { return cat->putSnapshot(fullSnapshot(3)); }));
		return {};
	});
	ASSERT_TRUE(r) << describe(r);
	auto page = cat->describeSnapshots({}, {}, 0, "");
	ASSERT_TRUE(page) << describe(page);
	EXPECT_EQ(idsOf(page->snapshots), (std::vector<std::string>{snapId(1), snapId(3)}));

	// Committed means on disk: another connection sees it.
	auto other = Catalog::open(file());
	ASSERT_TRUE(other) << describe(other);
	auto seen = (*other)->getSnapshot(snapId(3));
	ASSERT_TRUE(seen && *seen) << describe(seen);
}

TEST_F(CatalogTest, ClearKeepsJobsAndRequests)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	EXPECT_TRUE(cat->isEmpty());
	ASSERT_TRUE(cat->putVolume(fullVolume(1)));
	EXPECT_FALSE(cat->isEmpty()) << "a volume alone makes it non-empty";
	ASSERT_TRUE(cat->putSnapshot(fullSnapshot(1)));
	ASSERT_TRUE(cat->putJob(fullJob(1)));
	ASSERT_TRUE(cat->putRequest({"tok", "h", "resp", isoTime(1)}));

	ASSERT_TRUE(cat->clear());
	EXPECT_TRUE(cat->isEmpty());
	RawDb raw(file());
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM tags"), "0");
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM snapshots"), "0");
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM volumes"), "0");
	auto j = cat->getJob(fullJob(1).jobId);
	ASSERT_TRUE(j && *j) << describe(j);
	EXPECT_EQ(**j, fullJob(1));
	auto q = cat->getRequest("tok");
	ASSERT_TRUE(q && *q) << describe(q);

	ASSERT_TRUE(cat->putSnapshot(snapshot(5, volId(1), "completed", isoTime(5))));
	EXPECT_FALSE(cat->isEmpty()) << "a snapshot alone makes it non-empty";

	// A rebuild: clear and upserts as one transaction.
	ASSERT_TRUE(cat->transaction([&]() -> Result<void> {
		VS_TRY(cat->clear());
		for (unsigned n = 0; n < 4; n++)
			VS_TRY(cat->putSnapshot(fullSnapshot(n)));
		return {};
	}));
	auto all = cat->describeSnapshots({}, {}, 0, "");
	ASSERT_TRUE(all) << describe(all);
	EXPECT_EQ(all->snapshots.size(), 4u);
}

TEST_F(CatalogTest, NewerSchemaIsRefused)
{
	{
		auto cat = openCatalog();
		ASSERT_TRUE(cat);
	}
	{
		RawDb raw(file());
		raw.exec("PRAGMA user_version = " + std::to_string(Catalog::kSchemaVersion + 1));
	}
	auto cat = Catalog::open(file());
	ASSERT_FALSE(cat);
	EXPECT_EQ(cat.error().code, errc::kCorrupt);
	EXPECT_NE(cat.error().message.find(file().string()), std::string::npos) << cat.error().message;
	EXPECT_NE(cat.error().message.find("version " + std::to_string(Catalog::kSchemaVersion + 1)), std::string::npos)
		<< cat.error().message;
	RawDb raw(file());
	EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(Catalog::kSchemaVersion + 1)) << "left as it was";
}

PolicyRow fullPolicy(unsigned n)
{
	char id[32];
	std::snprintf(id, sizeof(id), "policy-%017x", n);
	return {id, "nightly " + std::to_string(n), n % 2 ? "ENABLED" : "DISABLED", R"({"ResourceTypes":["VOLUME"]})",
		"1000", isoTime(n), isoTime(n + 1), isoTime(n + 2)};
}

PolicyRunRow run(const PolicyRow &policy, const std::string &schedule, unsigned n)
{
	return {"run-" + std::to_string(n),
		policy.policyId,
		schedule,
		isoTime(n),
		isoTime(n + 1),
		n % 2 ? "succeeded" : "failed",
		n % 2 ? "" : "capture failed",
		{snapId(n), snapId(n + 1)},
		R"([{"SourceSnapshotId":")" + snapId(n) + R"(","TargetStore":"/srv/dr","State":"completed"}])",
		R"([{"TargetStore":"/srv/dr","SnapshotId":")" + snapId(n + 2) + R"("}])"};
}

TEST_F(CatalogTest, PoliciesAndTheirRuns)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	for (unsigned n : {3u, 1u, 2u})
		ASSERT_TRUE(cat->putPolicy(fullPolicy(n)));
	auto got = cat->getPolicy(fullPolicy(2).policyId);
	ASSERT_TRUE(got && *got) << describe(got);
	EXPECT_EQ(**got, fullPolicy(2));
	PolicyRow changed = fullPolicy(2);
	changed.state = "ENABLED";
	ASSERT_TRUE(cat->putPolicy(changed));
	auto all = cat->listPolicies();
	ASSERT_TRUE(all) << describe(all);
	ASSERT_EQ(all->size(), 3u);
	EXPECT_EQ((*all)[0], fullPolicy(1)) << "by creation time";
	EXPECT_EQ((*all)[1], changed);

	for (unsigned n : {10u, 30u, 20u, 40u})
		ASSERT_TRUE(cat->putPolicyRun(run(changed, "daily", n)));
	ASSERT_TRUE(cat->putPolicyRun(run(changed, "weekly", 50)));
	ASSERT_TRUE(cat->putPolicyRun(run(fullPolicy(1), "daily", 60)));
	auto runs = cat->policyRuns(changed.policyId, "daily", 3);
	ASSERT_TRUE(runs) << describe(runs);
	ASSERT_EQ(runs->size(), 3u);
	EXPECT_EQ((*runs)[0], run(changed, "daily", 40)) << "newest first, every field";
	EXPECT_EQ((*runs)[1].runId, "run-30");
	EXPECT_EQ((*runs)[2].runId, "run-20");

	// A schedule keeps its newest runs only; the other schedule's stay.
	for (unsigned n = 100; n < 100 + Catalog::kPolicyRunsKept; n++)
		ASSERT_TRUE(cat->putPolicyRun(run(changed, "daily", n)));
	auto kept = cat->policyRuns(changed.policyId, "daily", 1000);
	ASSERT_TRUE(kept) << describe(kept);
	ASSERT_EQ(kept->size(), size_t(Catalog::kPolicyRunsKept));
	EXPECT_EQ(kept->back().runId, "run-100") << "the oldest kept";
	auto weekly = cat->policyRuns(changed.policyId, "weekly", 1000);
	ASSERT_TRUE(weekly) << describe(weekly);
	EXPECT_EQ(weekly->size(), 1u);

	// clear() is a rebuild from manifests, which hold no policies.
	ASSERT_TRUE(cat->clear());
	ASSERT_TRUE(cat->removePolicy(changed.policyId));
	auto gone = cat->getPolicy(changed.policyId);
	ASSERT_TRUE(gone) << describe(gone);
	EXPECT_FALSE(gone->has_value());
	RawDb raw(file());
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM policy_runs WHERE policy_id = '" + changed.policyId + "'"), "0");
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM policy_runs"), "1") << "another policy's runs stay";
	EXPECT_EQ(raw.query("SELECT COUNT(*) FROM policies"), "2");
	EXPECT_TRUE(cat->removePolicy(changed.policyId)) << "removing what is not there is no error";
}

// A catalog an older virtsnap wrote keeps its rows, with what later
// versions added empty (their manifests had none of it either), and takes
// whole rows after: version 7 had no volumes' product codes, version 6 named a uid as a snapshot's owner (now: the
// default account, ""), version 5 had no encryption columns and said every
// snapshot was encrypted, version 4 had no runs' copies, version 3 no
// copies' columns, version 2 no product codes, version 1 no policies.
TEST_F(CatalogTest, OlderCatalogsAreMigrated)
{
	// Version 5 rows all said encrypted (hard-coded); a migration makes
	// them say what their manifests say: not encrypted.
	const std::string noVolumeCodes = "ALTER TABLE volumes DROP COLUMN product_codes; ";
	const std::string noUids = noVolumeCodes;
	const std::string noEncryption = noUids + "ALTER TABLE snapshots DROP COLUMN kms_key_id; "
					 "ALTER TABLE volumes DROP COLUMN encrypted; "
					 "ALTER TABLE volumes DROP COLUMN kms_key_id; ";
	const std::string noRunCopies = noEncryption + "ALTER TABLE policy_runs DROP COLUMN copies; "
						       "ALTER TABLE policy_runs DROP COLUMN deleted_copies; ";
	const std::string noCopies = noRunCopies + "ALTER TABLE snapshots DROP COLUMN source_snapshot_id; "
				     "ALTER TABLE snapshots DROP COLUMN source_store; "
				     "ALTER TABLE snapshots DROP COLUMN bytes_transferred; ";
	const std::string noCodes = noCopies + "ALTER TABLE snapshots DROP COLUMN product_codes; ";
	const std::string noPolicies = noCodes + "DROP TABLE policies; DROP TABLE policy_runs; ";
	for (const auto &[version, downgrade] : std::vector<std::pair<int, std::string>>{
		     {7, noVolumeCodes}, {6, noUids}, {5, noEncryption}, {4, noRunCopies}, {3, noCopies}, {2, noCodes}, {1, noPolicies}}) {
		SCOPED_TRACE("from version " + std::to_string(version));
		std::filesystem::remove(file());
		SnapshotRow before = fullSnapshot(1);
		before.encrypted = false;
		before.kmsKeyId = "";
		if (version < 4) {
			before.sourceSnapshotId = before.sourceStore = "";
			before.bytesTransferred = 0;
		}
		if (version < 3)
			before.productCodes.clear();
		SnapshotRow old = before;
		old.ownerId = version < 7 ? "1000" : ""; // version 7 named accounts already
		old.encrypted = version < 6; // hard-coded true before version 6
		before.ownerId = "";
		before.encrypted = false;
		VolumeRow volume = fullVolume(1);
		{
			auto cat = openCatalog();
			ASSERT_TRUE(cat);
			ASSERT_TRUE(cat->putSnapshot(old));
			ASSERT_TRUE(cat->putVolume(volume));
		}
		{
			RawDb raw(file());
			raw.exec(downgrade + "PRAGMA user_version = " + std::to_string(version));
		}
		auto cat = openCatalog();
		ASSERT_TRUE(cat);
		RawDb raw(file());
		EXPECT_EQ(raw.query("PRAGMA user_version"), std::to_string(Catalog::kSchemaVersion));
		auto kept = cat->getSnapshot(before.snapshotId);
		ASSERT_TRUE(kept && *kept) << describe(kept);
		EXPECT_EQ(**kept, before);
		volume.productCodes.clear(); // no version before 8 had them
		if (version < 6) {
			volume.encrypted = false; // nor before 6 encryption
			volume.kmsKeyId = "";
		}
		auto keptVolume = cat->getVolume(volume.volumeId);
		ASSERT_TRUE(keptVolume && *keptVolume) << describe(keptVolume);
		EXPECT_EQ(**keptVolume, volume);
		ASSERT_TRUE(cat->putVolume(fullVolume(2)));
		EXPECT_EQ(**cat->getVolume(fullVolume(2).volumeId), fullVolume(2));
		ASSERT_TRUE(cat->putSnapshot(fullSnapshot(2)));
		auto after = cat->getSnapshot(fullSnapshot(2).snapshotId);
		ASSERT_TRUE(after && *after) << describe(after);
		EXPECT_EQ(**after, fullSnapshot(2));
		ASSERT_TRUE(cat->putPolicy(fullPolicy(1)));
		ASSERT_TRUE(cat->putPolicyRun(run(fullPolicy(1), "daily", 1)));
		auto runs = cat->policyRuns(fullPolicy(1).policyId, "daily", 5);
		ASSERT_TRUE(runs) << describe(runs);
		ASSERT_FALSE(runs->empty());
		EXPECT_EQ(runs->back(), run(fullPolicy(1), "daily", 1));
	}
}

TEST_F(CatalogTest, UnusableFilesAreIoErrors)
{
	{
		std::ofstream out(file());
		out << "this is not an SQLite database, but it is long enough to look at its header..........";
	}
	auto garbage = Catalog::open(file());
	ASSERT_FALSE(garbage);
	EXPECT_EQ(garbage.error().code, errc::kIo);
	EXPECT_NE(garbage.error().message.find(file().string()), std::string::npos) << garbage.error().message;

	auto noDir = Catalog::open(root_ / "missing" / "catalog.sqlite");
	ASSERT_FALSE(noDir);
	EXPECT_EQ(noDir.error().code, errc::kIo);
	EXPECT_NE(noDir.error().message.find("missing/catalog.sqlite"), std::string::npos) << noDir.error().message;
}

} // namespace
} // namespace virtsnap::catalog::test
