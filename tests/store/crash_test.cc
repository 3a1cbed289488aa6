// Crashes, failed writes and a full disk at every step of a snapshot commit
// and of gc (FORMAT.md, "Write ordering" and "Garbage collection"). The
// SIGKILL tests elsewhere lose nothing a process wrote, synced or not, so
// they never put the order of the syncs to the test; these do, twice:
//  - through FaultBackend (fault_backend.h), at the backend contract: a crash
//    at each put, create, commit and remove loses what the contract does
//    not call durable yet, with the call itself lost or done;
//  - through DurabilityModel (durability_model.h), under the directory
//    backend: a power loss after each fsync keeps what POSIX promises and
//    nothing more, so a rename without its directory's fsync is lost.
// After each, a new process opens the store: it verifies clean, every
// earlier snapshot restores byte for byte, the snapshot interrupted exists
// whole or not at all, and gc then removes what the crash left and nothing
// that lives. An I/O error or a full disk at each write is one clear error,
// and the process goes on: the same operation again succeeds.
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <functional>
#include <iostream>
#include <set>

#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "durability_model.h"
#include "fault_backend.h"
#include "json/json.h"
#include "store/gc.h"
#include "store/lease.h"
#include "store/pack.h"
#include "store/snapshot_index.h"
#include "store/verify.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

using namespace std::chrono_literals;


// `slots` chunks from `seed`: every seventh zero, every fifth compressible,
// the others random, so that zero ids, compressed and stored blobs all occur.
Bytes diskImage(size_t slots, uint64_t seed)
{
	Bytes disk(slots * kChunk);
	for (size_t s = 0; s < slots; s++) {
		if (s % 7 == 6)
			continue;
		Bytes chunk = s % 5 == 4 ? compressibleData(kChunk, seed + s) : randomData(kChunk, seed + s);
		std::memcpy(disk.data() + s * kChunk, chunk.data(), kChunk);
	}
	return disk;
}

// `disk` with `slots` written anew from `seed` (a negative slot is zeroed).
Bytes rewritten(Bytes disk, const std::vector<int> &slots, uint64_t seed)
{
	for (int s : slots) {
		size_t slot = size_t(s < 0 ? -s : s);
		Bytes chunk = s < 0 ? Bytes(kChunk) : randomData(kChunk, seed + slot);
		std::memcpy(disk.data() + slot * kChunk, chunk.data(), kChunk);
	}
	return disk;
}

// `disk` with slots [from, from + count) copied from `other`.
Bytes sharing(Bytes disk, const Bytes &other, size_t from, size_t count)
{
	std::memcpy(disk.data() + from * kChunk, other.data() + from * kChunk, count * kChunk);
	return disk;
}

struct Snapshot {
	std::string id;
	std::string disk;   // the volume it is of
	Bytes data;
	std::string parent; // "" when full
	Bytes parentData;
};

// As the engine commits a snapshot (snapshot_engine.cc): a shared lease from
// before the parent is read until the manifest is written; the slots that
// changed since the parent (all of them when full) through a ChunkWriter,
// then the index pages, the writer's commit, a check that the lease still
// holds, the manifest.
Result<void> commitSnapshot(Store &store, const Snapshot &s)
{
	VS_ASSIGN(auto lease, store.lease(Lease::Kind::Shared, "snapshot " + s.id));
	auto codec = store.newCodec();
	Manifest m;
	m.snapshotId = s.id;
	m.volumeId = volumeIdFor("name:crash-vm", s.disk);
	m.volume = {"name:crash-vm", "crash-vm", s.disk, "raw"};
	m.parentSnapshotId = s.parent;
	m.captureMode = s.parent.empty() ? "full" : "incremental";
	m.startTime = isoTimeNow();
	SnapshotIndex index(s.data.size(), kChunk);
	if (!s.parent.empty()) {
		VS_ASSIGN(Manifest parent, store.getManifest(s.parent));
		VS_ASSIGN(index, SnapshotIndex::load(store, *codec, parent));
	}
	auto writer = store.newWriter();
	for (uint64_t slot = 0; slot < index.slots(); slot++) {
		std::span<const uint8_t> data(s.data.data() + slot * kChunk, index.slotLength(slot));
		if (!s.parent.empty() &&
		    std::equal(data.begin(), data.end(), s.parentData.begin() + long(slot * kChunk)))
			continue; // not in the dirty bitmap
		if (isAllZero(data)) {
			index.set(slot, kZeroChunk);
			continue;
		}
		VS_ASSIGN(ChunkId id, writer->put(*codec, data, ChunkType::Data));
		index.set(slot, id);
	}
	VS_TRY(index.save(*writer, *codec, m));
	VS_TRY(writer->commit());
	if (!lease->held())
		return fail(errc::kStoreUnavailable, "the lease was lost; nothing was committed");
	m.completionTime = isoTimeNow();
	return store.putManifest(m);
}

std::string manifestObject(const std::string &snapshotId)
{
	return "snapshots/" + snapshotId + ".manifest";
}

// Whether a call of that kind on that object reached the backend: made
// and not refused, or the one the process died after.
bool performed(const std::vector<CallRecord> &calls, Call call, const std::string &object)
{
	return std::any_of(calls.begin(), calls.end(), [&](const CallRecord &r) {
		return r.call == call && r.object == object && !r.refused &&
		       (r.fault == Fault::None || r.fault == Fault::CrashAfter);
	});
}

// A pid on this host that no longer runs: what a crashed holder's lease
// names when the next process looks at it.
pid_t exitedPid()
{
	static pid_t pid = [] {
		pid_t child = ::fork();
		if (child == 0)
			::_exit(0);
		int status = 0;
		::waitpid(child, &status, 0);
		return child;
	}();
	return pid;
}

// This process plays both the one that crashed and the next one, so the
// leases its crashed Store left (its Lease objects could not remove them)
// name a live pid: this one. A real crash leaves them naming a pid that is
// gone, which frees them at once on this host (lease.cc, diedHere): so they
// are rewritten to name one that is gone, and lease.cc does the rest.
void buryLeases(Backend &backend)
{
	std::vector<std::string> names;
	ASSERT_TRUE(backend.list("locks/", [&](const ObjectInfo &info) { names.push_back(info.name); }));
	for (const std::string &name : names) {
		auto body = backend.get(name);
		ASSERT_TRUE(body) << describe(body);
		auto j = Json::parse(std::string_view((const char *)body->data(), body->size()));
		ASSERT_TRUE(j) << name;
		if (j->getInt("pid").value_or(0) != ::getpid())
			continue;
		j->set("pid", Json::integer(exitedPid()));
		std::string text = j->dump();
		ASSERT_TRUE(backend.put(name, asBytes(text)));
	}
}

// A lease whose release failed while its process went on holds until it
// expires, against that process too: the test lets its five minutes pass.
void expireLeases(const fs::path &dir)
{
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(dir / "locks", ec)) {
		struct timespec ts[2];
		::clock_gettime(CLOCK_REALTIME, &ts[0]);
		ts[0].tv_sec -= 600;
		ts[1] = ts[0];
		ASSERT_EQ(::utimensat(AT_FDCWD, entry.path().c_str(), ts, 0), 0) << entry.path();
	}
}

// The chunk ids each pack index names, by pack; and the packs with no index.
struct PackCensus {
	std::map<std::string, std::vector<ChunkId>> indexed;
	std::set<std::string> withoutIndex;
	std::set<std::string> indexWithoutPack;
};

PackCensus census(Store &store)
{
	PackCensus c;
	std::map<std::string, std::pair<bool, bool>> seen; // pack, index
	auto listed = store.backend().list("packs/", [&](const ObjectInfo &info) {
		bool isIndex = false;
		if (auto id = packIdOf(info.name, &isIndex))
			(isIndex ? seen[toHex(*id)].second : seen[toHex(*id)].first) = true;
	});
	EXPECT_TRUE(listed) << describe(listed);
	for (const auto &[hex, kinds] : seen) {
		if (!kinds.second) {
			c.withoutIndex.insert(hex);
			continue;
		}
		if (!kinds.first)
			c.indexWithoutPack.insert(hex);
		PackId id;
		std::memcpy(id.data(), fromHex(hex)->data(), id.size());
		auto index = PackReader(store.backend(), id).index(store.domain());
		EXPECT_TRUE(index) << hex << ": " << describe(index);
		if (index)
			for (const PackEntry &e : index->entries)
				c.indexed[hex].push_back(e.id);
	}
	return c;
}

// Reads every slot of `id` through its index, as a restore does.
void expectRestores(Store &store, const std::string &id, const Bytes &disk)
{
	auto codec = store.newCodec();
	auto m = store.getManifest(id);
	ASSERT_TRUE(m) << describe(m);
	auto index = SnapshotIndex::load(store, *codec, *m);
	ASSERT_TRUE(index) << describe(index);
	ASSERT_EQ(index->volumeSize(), disk.size()) << id;
	Bytes out(disk.size());
	for (uint64_t s = 0; s < index->slots(); s++) {
		if (isZeroId(index->at(s)))
			continue;
		auto data = store.readChunk(*codec, index->at(s));
		ASSERT_TRUE(data) << id << " slot " << s << ": " << describe(data);
		ASSERT_EQ(data->size(), index->slotLength(s)) << id << " slot " << s;
		std::memcpy(out.data() + s * kChunk, data->data(), data->size());
	}
	EXPECT_TRUE(out == disk) << id << " does not restore to its data";
}

using Operation = std::function<Result<void>(Store &)>;

// What must hold of the store whatever happened to the operation.
struct Expectations {
	std::vector<Snapshot> earlier;        // restore byte for byte
	std::vector<std::string> deleted;     // stay deleted
	std::optional<Snapshot> interrupted;  // whole, or not at all
	// What a run without faults leaves in the pack indexes, once gc has run.
	std::set<std::string> chunksAfterGc;
};

class CrashTest : public StoreDirTest
{
protected:
	void SetUp() override
	{
		StoreDirTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		bool created = false;
		auto init = Store::init(baseDir(), keyFile(), kChunk, &created);
		ASSERT_TRUE(init) << describe(init);
	}

	fs::path baseDir() const { return root_ / "base"; }

	std::unique_ptr<Store> openLocal(const fs::path &dir)
	{
		auto s = Store::open(dir, keyFile());
		EXPECT_TRUE(s) << describe(s);
		return s ? std::move(*s) : nullptr;
	}

	// Every run starts from a copy of the same base.
	fs::path freshCopy()
	{
		fs::path dir = root_ / ("run-" + std::to_string(runs_++));
		fs::copy(baseDir(), dir, fs::copy_options::recursive);
		// As cp -p: gc judges partial objects and leases by their age.
		for (const auto &entry : fs::recursive_directory_iterator(baseDir()))
			if (entry.is_regular_file())
				fs::last_write_time(dir / fs::relative(entry.path(), baseDir()),
						    entry.last_write_time());
		return dir;
	}

	static std::set<std::string> chunkSet(const PackCensus &c)
	{
		std::set<std::string> out;
		for (const auto &[pack, ids] : c.indexed)
			for (const ChunkId &id : ids)
				out.insert(idHex(id));
		return out;
	}

	// The store as a new process finds it: it opens, verifies clean, and
	// holds what `e` says. Returns whether the interrupted snapshot exists.
	bool checkStore(const fs::path &dir, const Expectations &e)
	{
		auto store = openLocal(dir);
		if (!store)
			return false;
		auto report = verifySnapshots(*store, {}, 2);
		EXPECT_TRUE(report) << describe(report);
		if (report) {
			for (const SnapshotVerification &v : report->snapshots)
				EXPECT_TRUE(v.ok) << v.snapshotId << ": " << (v.problems.empty() ? "" : v.problems[0]);
			EXPECT_TRUE(report->storeProblems.empty()) << report->storeProblems[0];
		}
		for (const Snapshot &s : e.earlier)
			expectRestores(*store, s.id, s.data);
		for (const std::string &id : e.deleted)
			EXPECT_EQ(codeOf(store->getManifest(id)), errc::kSnapshotNotFound) << id;
		// Neither writers nor gc ever leave an index without its pack.
		EXPECT_TRUE(census(*store).indexWithoutPack.empty());
		if (!e.interrupted)
			return false;
		auto m = store->getManifest(e.interrupted->id);
		if (!m) {
			EXPECT_EQ(m.error().code, errc::kSnapshotNotFound) << describe(m);
			return false;
		}
		expectRestores(*store, e.interrupted->id, e.interrupted->data);
		return true;
	}

	// gc by a new process removes what the crash left and nothing that
	// lives: afterwards the pack indexes hold each chunk once, no chunk
	// that no snapshot needs (with `e.chunksAfterGc`, exactly those), no
	// pack lacks its index, no temporary file or lease is left, and a
	// second run finds nothing to do.
	void collectAndCheck(const fs::path &dir, Expectations e, bool interruptedExists)
	{
		// The next gc runs long after the crash: what the dead writer left
		// is older than the minute gc spares any partial object.
		for (const fs::path &p : filesContaining(dir, ".tmp-"))
			fs::last_write_time(p, fs::file_time_type::clock::now() - 10min);
		{
			auto store = openLocal(dir);
			ASSERT_TRUE(store);
			GcOptions opts;
			opts.grace = 0s;
			auto r = collectGarbage(*store, opts);
			ASSERT_TRUE(r) << describe(r);
			EXPECT_TRUE(r->warnings.empty()) << r->warnings[0];
			EXPECT_EQ(r->chunksMissing, 0u);
		}
		if (!interruptedExists)
			e.interrupted.reset();
		else
			e.earlier.push_back(*e.interrupted);
		EXPECT_EQ(checkStore(dir, e), interruptedExists);
		auto store = openLocal(dir);
		ASSERT_TRUE(store);
		GcOptions opts;
		opts.grace = 0s;
		auto again = collectGarbage(*store, opts);
		ASSERT_TRUE(again) << describe(again);
		EXPECT_EQ(again->packsRemoved + again->packsRepacked + again->tmpFilesRemoved, 0u);
		EXPECT_EQ(again->chunksUnreferenced, 0u);
		PackCensus c = census(*store);
		EXPECT_TRUE(c.withoutIndex.empty()) << *c.withoutIndex.begin();
		std::map<std::string, int> copies;
		for (const auto &[pack, ids] : c.indexed)
			for (const ChunkId &id : ids)
				copies[idHex(id)]++;
		for (const auto &[id, n] : copies)
			EXPECT_EQ(n, 1) << "chunk " << id.substr(0, 16) << " is in " << n << " packs";
		if (!e.chunksAfterGc.empty()) {
			EXPECT_EQ(chunkSet(c), e.chunksAfterGc);
		}
		EXPECT_EQ(countIn(dir, ".tmp-"), 0u);
		EXPECT_TRUE(!fs::exists(dir / "locks") || fs::is_empty(dir / "locks"));
	}

	static size_t countIn(const fs::path &dir, const std::string &part)
	{
		return filesContaining(dir, part).size();
	}

	// The store through FaultBackend, in the process `injector` stands for.
	Result<std::unique_ptr<Store>> openFaulty(const fs::path &dir, std::shared_ptr<FaultInjector> injector)
	{
		return Store::open(std::make_unique<FaultBackend>(std::make_unique<LocalBackend>(dir), std::move(injector)),
				   keyFile());
	}

	// A crash at every step `op` makes, with the step itself lost (before)
	// or done (after), until a run makes fewer steps: that last run is the
	// one without a crash. Returns the number of steps.
	size_t crashAtEveryStep(Fault fault, const Operation &op, const Expectations &e)
	{
		for (uint64_t step = 0;; step++) {
			SCOPED_TRACE(std::string(faultName(fault)) + " step " + std::to_string(step));
			fs::path dir = freshCopy();
			auto injector = std::make_shared<FaultInjector>();
			{
				auto store = openFaulty(dir, injector);
				EXPECT_TRUE(store) << describe(store);
				if (!store)
					return 0;
				injector->arm({fault, step, kDurableCalls});
				auto r = op(**store);
				// A process that crashed answers nothing; the one that did not must have succeeded.
				if (!injector->faulted()) {
					EXPECT_TRUE(r) << describe(r);
				}
			} // what the crashed process held goes; its calls fail, so its leases stay
			auto hit = injector->faulted();
			bool crashed = hit.has_value();
			SCOPED_TRACE("steps:\n" + injector->describeCalls(kDurableCalls));
			for (const CallRecord &c : injector->calls())
				if (hit && c.seq > hit->seq) {
					EXPECT_TRUE(c.refused) << "after the crash: " << c.describe();
				}
			LocalBackend next(dir);
			buryLeases(next);
			bool manifestMade =
				e.interrupted && performed(injector->calls(), Call::Create, manifestObject(e.interrupted->id));
			// Durable once done, and not there unless done.
			EXPECT_EQ(checkStore(dir, e), manifestMade);
			collectAndCheck(dir, e, manifestMade);
			fs::remove_all(dir);
			if (!crashed || HasFailure()) {
				std::cout << faultName(fault) << ": " << step << " steps\n";
				return step;
			}
		}
	}

	// An I/O error or a full disk at every write `op` makes: the operation
	// fails with that error (but at its lease's release), the store holds
	// what it held, or that plus garbage, and the process goes on: the same
	// operation again, in the same Store, succeeds.
	size_t failAtEveryStep(Fault fault, const Operation &op, const Expectations &e)
	{
		const char *code = fault == Fault::NoSpace ? errc::kNoSpace : errc::kIo;
		for (uint64_t step = 0;; step++) {
			SCOPED_TRACE(std::string(faultName(fault)) + " step " + std::to_string(step));
			fs::path dir = freshCopy();
			auto injector = std::make_shared<FaultInjector>();
			auto store = openFaulty(dir, injector);
			EXPECT_TRUE(store) << describe(store);
			if (!store)
				return 0;
			injector->arm({fault, step, kWritingCalls});
			auto r = op(**store);
			injector->disarm();
			auto hit = injector->faulted();
			SCOPED_TRACE("steps:\n" + injector->describeCalls(kWritingCalls));
			// A lease's release is not the operation's: its failure leaves
			// the lease to expire, and the operation succeeds.
			auto calls = injector->calls();
			bool releasedLease = hit && hit->call == Call::Remove && hit->object.starts_with("locks/") &&
					     std::any_of(calls.begin(), calls.end(), [&](const CallRecord &c) {
						     return c.call == Call::Create && c.object == hit->object;
					     });
			if (hit && !releasedLease) {
				EXPECT_FALSE(r);
				if (!r) {
					EXPECT_EQ(r.error().code, code) << describe(r);
					EXPECT_NE(r.error().message.find("fault injection"), std::string::npos)
						<< describe(r);
				}
			} else {
				EXPECT_TRUE(r) << describe(r);
			}
			expireLeases(dir);
			EXPECT_EQ(checkStore(dir, e), r && e.interrupted);
			if (!r) {
				auto again = op(**store);
				EXPECT_TRUE(again) << describe(again);
			}
			store->reset();
			collectAndCheck(dir, e, e.interrupted.has_value());
			fs::remove_all(dir);
			if (!hit || HasFailure()) {
				std::cout << faultName(fault) << ": " << step << " steps\n";
				return step;
			}
		}
	}

	// A power loss after every fsync `op` makes under the directory
	// backend (and before the first): each leaves what the syncs so far
	// made durable, and nothing else (durability_model.h). Once `op` has
	// returned, all of it is durable. Returns the number of syncs.
	size_t powerLossAfterEverySync(const Operation &op, const Expectations &e)
	{
		fs::path dir = freshCopy();
		auto store = openLocal(dir);
		if (!store)
			return 0;
		DurabilityModel::start(dir);
		auto r = op(*store);
		size_t syncs = DurabilityModel::syncs();
		DurabilityModel::stop();
		EXPECT_TRUE(r) << describe(r);
		store.reset();
		std::string trace;
		auto log = DurabilityModel::log();
		for (size_t i = 0; i < log.size(); i++)
			trace += std::to_string(i + 1) + " " + log[i] + "\n";
		SCOPED_TRACE("syncs:\n" + trace);
		bool existed = false;
		for (size_t k = 0; k <= syncs; k++) {
			SCOPED_TRACE("power loss after sync " + std::to_string(k));
			fs::path lost = root_ / ("power-" + std::to_string(k));
			auto built = DurabilityModel::materialize(k, lost);
			EXPECT_TRUE(built) << describe(built);
			LocalBackend next(lost);
			buryLeases(next);
			if (k == syncs && !e.chunksAfterGc.empty()) {
				// gc's work is durable when it returns, with no gc after.
				auto after = openLocal(lost);
				if (after) {
					EXPECT_EQ(chunkSet(census(*after)), e.chunksAfterGc);
				}
			}
			bool exists = checkStore(lost, e);
			// Once there, there for good; and there once the commit returned.
			EXPECT_TRUE(exists || !existed);
			existed = exists;
			if (k == syncs && e.interrupted) {
				EXPECT_TRUE(exists) << "the snapshot whose commit returned is gone";
			}
			collectAndCheck(lost, e, exists);
			fs::remove_all(lost);
			if (HasFailure())
				break;
		}
		fs::remove_all(dir);
		std::cout << "power loss: " << syncs << " syncs\n";
		return syncs;
	}

	int runs_ = 0;
};

// A process that dies at a sync while the machine goes on leaves what it did
// after in the page cache, where the next process finds it and builds on
// it: a directory the first made, say, whose entry was never synced. What
// the next one commits is durable once its commit returns all the same.
// The first snapshot of a store makes every directory there is to make.
TEST_F(CrashTest, WhatTheNextProcessCommitsOnWhatADeadOneLeftIsDurable)
{
	Snapshot first{"snap-first", "vda", diskImage(12, 700), "", {}};
	Snapshot next{"snap-next", "vdb", diskImage(12, 800), "", {}};
	for (size_t k = 0;; k++) {
		SCOPED_TRACE("the first process dies after sync " + std::to_string(k));
		fs::path dir = freshCopy();
		DurabilityModel::start(dir);
		DurabilityModel::failSyncsAfter(k);
		bool firstDone = false;
		{
			auto store = openLocal(dir);
			ASSERT_TRUE(store);
			firstDone = commitSnapshot(*store, first).has_value();
		}
		DurabilityModel::syncAgain();
		{
			LocalBackend backend(dir);
			buryLeases(backend);
			auto store = openLocal(dir);
			ASSERT_TRUE(store);
			auto r = commitSnapshot(*store, next);
			ASSERT_TRUE(r) << describe(r);
		}
		size_t syncs = DurabilityModel::syncs();
		DurabilityModel::stop();
		std::string trace;
		auto log = DurabilityModel::log();
		for (const std::string &line : log)
			trace += line + "\n";
		SCOPED_TRACE("syncs:\n" + trace);

		fs::path lost = root_ / "lost";
		auto built = DurabilityModel::materialize(syncs, lost);
		ASSERT_TRUE(built) << describe(built);
		LocalBackend backend(lost);
		buryLeases(backend);
		Expectations e{{next}, {}, first, {}};
		bool firstExists = checkStore(lost, e);
		if (firstDone) {
			EXPECT_TRUE(firstExists);
		}
		collectAndCheck(lost, e, firstExists);
		fs::remove_all(lost);
		fs::remove_all(dir);
		if (firstDone || HasFailure()) {
			std::cout << "process crash, then power loss: " << k << " syncs\n";
			break;
		}
	}
}

// A store with a few snapshots of two volumes (one incremental, one sharing
// chunks with the other volume's) and nothing else: no garbage.
class CommitCrashTest : public CrashTest
{
protected:
	void SetUp() override
	{
		CrashTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		Bytes a1 = diskImage(24, 100);
		Bytes a2 = rewritten(a1, {2, 9, -13, 17}, 150);
		Bytes b1 = sharing(diskImage(12, 200), a1, 0, 4);
		earlier_ = {{"snap-a1", "vda", a1, "", {}},
			    {"snap-a2", "vda", a2, "snap-a1", a1},
			    {"snap-b1", "vdb", b1, "", {}}};
		auto store = openLocal(baseDir());
		ASSERT_TRUE(store);
		for (const Snapshot &s : earlier_) {
			auto r = commitSnapshot(*store, s);
			ASSERT_TRUE(r) << describe(r);
		}
		// A full snapshot of a new volume that shares chunks with one, and
		// an incremental one on top of snap-a2.
		full_ = {"snap-c1", "vdc", sharing(diskImage(20, 300), a1, 0, 6), "", {}};
		incremental_ = {"snap-a3", "vda", rewritten(a2, {1, 9, -5, 20, 23}, 400), "snap-a2", a2};
	}

	Expectations expect(const Snapshot &interrupted) const { return {earlier_, {}, interrupted, {}}; }

	static Operation commit(const Snapshot &s)
	{
		return [s](Store &store) { return commitSnapshot(store, s); };
	}

	std::vector<Snapshot> earlier_;
	Snapshot full_, incremental_;
};

TEST_F(CommitCrashTest, StepsAreInTheFormatsOrder)
{
	for (const Snapshot *s : {&full_, &incremental_}) {
		fs::path dir = freshCopy();
		auto injector = std::make_shared<FaultInjector>();
		auto store = openFaulty(dir, injector);
		ASSERT_TRUE(store) << describe(store);
		injector->clearLog();
		ASSERT_TRUE(commitSnapshot(**store, *s));
		std::vector<CallRecord> steps;
		for (const CallRecord &r : injector->calls())
			if (r.step)
				steps.push_back(r);
		std::cout << s->id << ": " << steps.size() << " steps\n" << injector->describeCalls(kDurableCalls);
		// Lease; the pack, then its index; the manifest; the lease's release.
		ASSERT_EQ(steps.size(), 5u) << injector->describeCalls(kDurableCalls);
		EXPECT_EQ(steps[0].call, Call::Create);
		EXPECT_TRUE(steps[0].object.starts_with("locks/shared-"));
		EXPECT_EQ(steps[1].call, Call::Commit);
		bool isIndex = true;
		auto pack = packIdOf(steps[1].object, &isIndex);
		ASSERT_TRUE(pack);
		EXPECT_FALSE(isIndex);
		EXPECT_EQ(steps[2].call, Call::Put);
		EXPECT_EQ(steps[2].object, packIndexName(*pack));
		EXPECT_EQ(steps[3].call, Call::Create);
		EXPECT_EQ(steps[3].object, manifestObject(s->id));
		EXPECT_EQ(steps[4].call, Call::Remove);
		EXPECT_EQ(steps[4].object, steps[0].object);
	}
}

TEST_F(CommitCrashTest, FullSnapshotCrashedAtEveryStep)
{
	for (Fault f : {Fault::CrashBefore, Fault::CrashAfter})
		EXPECT_EQ(crashAtEveryStep(f, commit(full_), expect(full_)), 5u);
}

TEST_F(CommitCrashTest, IncrementalSnapshotCrashedAtEveryStep)
{
	for (Fault f : {Fault::CrashBefore, Fault::CrashAfter})
		EXPECT_EQ(crashAtEveryStep(f, commit(incremental_), expect(incremental_)), 5u);
}

TEST_F(CommitCrashTest, PowerLossAfterEverySyncOfAFullSnapshot)
{
	EXPECT_GE(powerLossAfterEverySync(commit(full_), expect(full_)), 5u);
}

TEST_F(CommitCrashTest, PowerLossAfterEverySyncOfAnIncrementalSnapshot)
{
	EXPECT_GE(powerLossAfterEverySync(commit(incremental_), expect(incremental_)), 5u);
}

TEST_F(CommitCrashTest, FullSnapshotFailingAtEveryWrite)
{
	for (Fault f : {Fault::IoError, Fault::NoSpace})
		EXPECT_GT(failAtEveryStep(f, commit(full_), expect(full_)), 5u);
}

TEST_F(CommitCrashTest, IncrementalSnapshotFailingAtEveryWrite)
{
	for (Fault f : {Fault::IoError, Fault::NoSpace})
		EXPECT_GT(failAtEveryStep(f, commit(incremental_), expect(incremental_)), 5u);
}

// A store that gives gc every kind of work: two sparse packs to merge into
// one, a snapshot deleted (its pack wholly dead), a pack whose writer died
// before its index, a temporary file a writer left, and the lease of a
// process that crashed.
class GcCrashTest : public CrashTest
{
protected:
	void SetUp() override
	{
		CrashTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		auto store = openLocal(baseDir());
		ASSERT_TRUE(store);
		auto codec = store->newCodec();
		auto chunks = [](size_t n, uint64_t seed) {
			std::vector<Bytes> out;
			for (size_t i = 0; i < n; i++)
				out.push_back(randomData(kChunk, seed + i));
			return out;
		};
		auto both = [](std::vector<Bytes> a, const std::vector<Bytes> &b) {
			a.insert(a.end(), b.begin(), b.end());
			return a;
		};
		auto disk = [](const std::vector<Bytes> &parts) {
			Bytes out;
			for (const Bytes &c : parts)
				out.insert(out.end(), c.begin(), c.end());
			return out;
		};
		// One pack per call.
		auto putChunks = [&](const std::vector<Bytes> &data) {
			auto writer = store->newWriter();
			for (const Bytes &d : data)
				ASSERT_TRUE(writer->put(*codec, d, ChunkType::Data));
			ASSERT_TRUE(writer->commit());
		};
		auto shared = chunks(8, 1000), kept = chunks(4, 2000);
		putChunks(both(shared, chunks(8, 1100)));
		putChunks(both(kept, chunks(6, 2100)));
		snapA_ = {"snap-a", "vda", disk(both(shared, chunks(8, 3000))), "", {}};
		snapB_ = {"snap-b", "vdb", disk(both(kept, chunks(6, 4000))), "", {}};
		Snapshot snapD{"snap-d", "vdd", disk(chunks(8, 5000)), "", {}};
		for (const Snapshot *s : {&snapA_, &snapB_, &snapD}) {
			auto r = commitSnapshot(*store, *s);
			ASSERT_TRUE(r) << describe(r);
		}
		ASSERT_TRUE(store->deleteManifest(snapD.id));

		auto orphans = chunks(3, 6000);
		putChunks(orphans);
		auto orphanPack = store->locate(codec->idOf(orphans[0]));
		ASSERT_TRUE(orphanPack);
		ASSERT_TRUE(store->backend().remove(packIndexName(orphanPack->pack)));
		fs::path partial = baseDir() / "snapshots" / "snap-x.manifest.tmp-0123456789abcdef";
		ASSERT_TRUE(writeFileAtomic(partial, asBytes("partial")));
		// Older than the minute gc leaves any partial object, whatever the
		// grace: a writer that died, not one at work.
		fs::last_write_time(partial, fs::file_time_type::clock::now() - 10min);
		{
			auto lease =
				Lease::acquire(store->backend(), Lease::Kind::Shared, "snapshot of a crashed process");
			ASSERT_TRUE(lease) << describe(lease);
			std::string name = (*lease)->name();
			auto body = store->backend().get(name);
			ASSERT_TRUE(body);
			lease->reset();
			ASSERT_TRUE(store->backend().put(name, *body));
			buryLeases(store->backend());
		}
		store.reset();

		// What gc makes of it when nothing goes wrong.
		fs::path clean = freshCopy();
		auto cleanStore = openLocal(clean);
		ASSERT_TRUE(cleanStore);
		auto r = collectGarbage(*cleanStore, gcOptions());
		ASSERT_TRUE(r) << describe(r);
		ASSERT_EQ(r->packsRepacked, 2u);
		ASSERT_EQ(r->packsWritten, 1u);
		ASSERT_EQ(r->packsRemoved, 2u);
		ASSERT_EQ(r->packsWithoutIndexRemoved, 1u);
		ASSERT_EQ(r->tmpFilesRemoved, 1u);
		expected_ = {{snapA_, snapB_}, {snapD.id}, std::nullopt, chunkSet(census(*cleanStore))};
		cleanStore.reset();
		fs::remove_all(clean);
	}

	static GcOptions gcOptions()
	{
		GcOptions opts;
		opts.grace = 0s; // everything is old enough
		return opts;
	}

	static Result<void> gc(Store &store)
	{
		VS_ASSIGN(GcReport r, collectGarbage(store, gcOptions()));
		if (!r.warnings.empty())
			return fail(errc::kInternal, "gc warned: " + r.warnings[0]);
		return {};
	}

	Snapshot snapA_, snapB_;
	Expectations expected_;
};

TEST_F(GcCrashTest, StepsAreInTheFormatsOrder)
{
	fs::path dir = freshCopy();
	auto injector = std::make_shared<FaultInjector>();
	auto store = openFaulty(dir, injector);
	ASSERT_TRUE(store) << describe(store);
	injector->clearLog();
	ASSERT_TRUE(gc(**store));
	std::vector<CallRecord> steps;
	for (const CallRecord &r : injector->calls())
		if (r.step)
			steps.push_back(r);
	std::cout << "gc: " << steps.size() << " steps\n" << injector->describeCalls(kDurableCalls);
	// The lease; the dead one's removal; the new pack, then its index; the
	// old indexes and packs; sweepPartial; the lease's release.
	ASSERT_EQ(steps.size(), 13u) << injector->describeCalls(kDurableCalls);
	EXPECT_EQ(steps[0].call, Call::Create);
	EXPECT_TRUE(steps[0].object.starts_with("locks/exclusive-"));
	EXPECT_EQ(steps[1].call, Call::Remove);
	EXPECT_TRUE(steps[1].object.starts_with("locks/shared-"));
	EXPECT_EQ(steps[2].call, Call::Commit);
	bool isIndex = true;
	auto written = packIdOf(steps[2].object, &isIndex);
	ASSERT_TRUE(written);
	EXPECT_EQ(steps[3].call, Call::Put);
	EXPECT_EQ(steps[3].object, packIndexName(*written));
	std::map<std::string, size_t> indexGone, packGone;
	for (size_t i = 4; i < 11; i++) {
		EXPECT_EQ(steps[i].call, Call::Remove);
		auto id = packIdOf(steps[i].object, &isIndex);
		ASSERT_TRUE(id) << steps[i].describe();
		(isIndex ? indexGone : packGone)[toHex(*id)] = i;
	}
	EXPECT_EQ(indexGone.size(), 3u); // the pack without index has none to remove
	EXPECT_EQ(packGone.size(), 4u);
	for (const auto &[pack, at] : indexGone)
		EXPECT_LT(at, packGone[pack]) << pack << ": the index goes first";
	EXPECT_EQ(steps[11].call, Call::SweepPartial);
	EXPECT_EQ(steps[12].call, Call::Remove);
	EXPECT_EQ(steps[12].object, steps[0].object);
}

TEST_F(GcCrashTest, CrashedAtEveryStep)
{
	for (Fault f : {Fault::CrashBefore, Fault::CrashAfter})
		EXPECT_EQ(crashAtEveryStep(f, gc, expected_), 13u);
}

TEST_F(GcCrashTest, PowerLossAfterEverySync)
{
	EXPECT_GE(powerLossAfterEverySync(gc, expected_), 13u);
}

TEST_F(GcCrashTest, FailingAtEveryWrite)
{
	for (Fault f : {Fault::IoError, Fault::NoSpace})
		EXPECT_GT(failAtEveryStep(f, gc, expected_), 13u);
}

} // namespace
} // namespace virtsnap::store::test
