// Several hosts on one store (FORMAT.md, "Several hosts on one store"):
// each host is a Store of its own over its own connection to one backend,
// as two daemons on two machines would be. On every backend: dedup across
// hosts, what one host commits or deletes is seen by the other, and gc on one
// host raced against commits on the other never removes a chunk a snapshot
// needs.
#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "store/gc.h"
#include "store/snapshot_index.h"
#include "store/verify.h"
#include "store_test_util.h"
#include "tests/support/backends.h"
#include "tests/support/test_env.h"

namespace virtsnap::store::test {
namespace {


// A disk of kSlots chunks, each one of `pool` blocks: disks built from one
// small pool share chunks, which is what makes dedup (and gc) interesting.
Bytes diskFrom(const std::vector<Bytes> &pool, std::mt19937 &rng)
{
	Bytes disk;
	for (uint64_t s = 0; s < kSlots; s++) {
		const Bytes &block = pool[rng() % pool.size()];
		disk.insert(disk.end(), block.begin(), block.end());
	}
	return disk;
}

class SharedStoreTest : public ::testing::TestWithParam<std::string>
{
protected:
	void SetUp() override
	{
		std::unique_ptr<Backend> first;
		REQUIRE_BACKEND(GetParam(), first, url_);
		bool created = false;
		auto init = Store::init(*first, key_.file("master.key"), kChunk, &created);
		ASSERT_TRUE(init) << describe(init);
		for (int i = 0; i < 64; i++)
			pool_.push_back(randomData(kChunk, 9000 + uint64_t(i)));
	}

	// A host: its own connection to the store.
	std::unique_ptr<Store> host()
	{
		auto backend = openBackend(url_, virtsnap::test::backendNamed(GetParam())->settings);
		EXPECT_TRUE(backend) << describe(backend);
		if (!backend)
			return nullptr;
		auto s = Store::open(std::move(*backend), key_.file("master.key"));
		EXPECT_TRUE(s) << describe(s);
		return s ? std::move(*s) : nullptr;
	}

	// A snapshot of `disk` as a writer takes it: a shared lease from before
	// its first chunk until its manifest is written. Returns the chunks it
	// added, or nullopt when a lease could not be had (gc runs).
	std::optional<uint64_t> snapshot(Store &store, const std::string &id, const Bytes &disk)
	{
		auto lease = store.lease(Lease::Kind::Shared, "snapshot " + id);
		if (!lease) {
			EXPECT_EQ(lease.error().code, errc::kIncorrectState) << describe(lease);
			return std::nullopt;
		}
		auto codec = store.newCodec();
		auto writer = store.newWriter();
		SnapshotIndex index(disk.size(), kChunk);
		for (uint64_t s = 0; s < index.slots(); s++) {
			auto c = writer->put(*codec, std::span(disk).subspan(s * kChunk, kChunk), ChunkType::Data);
			EXPECT_TRUE(c) << describe(c);
			if (!c)
				return std::nullopt;
			index.set(s, *c);
		}
		Manifest m;
		m.snapshotId = id;
		m.volumeId = volumeIdFor("name:vm", "vda");
		m.startTime = isoTimeNow();
		EXPECT_TRUE(index.save(*writer, *codec, m));
		EXPECT_TRUE(writer->commit());
		auto put = store.putManifest(m);
		EXPECT_TRUE(put) << describe(put);
		return writer->chunksNew();
	}

	// Reads every slot the way a restore does, under a lease, and compares.
	::testing::AssertionResult restores(Store &store, const std::string &id, const Bytes &disk)
	{
		auto lease = store.lease(Lease::Kind::Shared, "restore " + id);
		if (!lease)
			return ::testing::AssertionFailure() << "lease: " << lease.error().toString();
		auto codec = store.newCodec();
		auto m = store.getManifest(id);
		if (!m)
			return ::testing::AssertionFailure() << id << ": " << m.error().toString();
		auto index = SnapshotIndex::load(store, *codec, *m);
		if (!index)
			return ::testing::AssertionFailure() << id << ": " << index.error().toString();
		for (uint64_t s = 0; s < index->slots(); s++) {
			auto chunk = store.readChunk(*codec, index->at(s));
			if (!chunk)
				return ::testing::AssertionFailure() << id << " slot " << s << ": " << chunk.error().toString();
			if (!std::equal(chunk->begin(), chunk->end(), disk.begin() + long(s * kChunk)))
				return ::testing::AssertionFailure() << id << " slot " << s << " differs";
		}
		return ::testing::AssertionSuccess();
	}

	virtsnap::test::TempDir key_{"vs-shared-key"};
	std::string url_;
	std::vector<Bytes> pool_;
};

TEST_P(SharedStoreTest, DedupAcrossHostsAndEachSeesWhatTheOtherCommits)
{
	auto a = host(), b = host();
	ASSERT_TRUE(a && b);
	std::mt19937 rng(1);
	Bytes disk = diskFrom(pool_, rng);
	auto addedByA = snapshot(*a, "snap-a", disk);
	ASSERT_TRUE(addedByA);
	EXPECT_GT(*addedByA, 0u);
	// The same data through the other host: stored once, whoever wrote it.
	auto addedByB = snapshot(*b, "snap-b", disk);
	ASSERT_TRUE(addedByB);
	EXPECT_EQ(*addedByB, 0u) << "host B stored again what host A had stored";

	auto seenByB = b->listManifestIds();
	ASSERT_TRUE(seenByB) << describe(seenByB);
	EXPECT_EQ(*seenByB, (std::vector<std::string>{"snap-a", "snap-b"}));
	EXPECT_TRUE(restores(*b, "snap-a", disk));
	EXPECT_TRUE(restores(*a, "snap-b", disk));

	// A delete on one host is seen by the other.
	ASSERT_TRUE(a->deleteManifest("snap-b"));
	EXPECT_EQ(codeOf(b->getManifest("snap-b")), errc::kSnapshotNotFound);
	EXPECT_EQ(*b->listManifestIds(), std::vector<std::string>{"snap-a"});
}

TEST_P(SharedStoreTest, AReaderOnOneHostKeepsGcOnTheOtherOut)
{
	auto a = host(), b = host();
	ASSERT_TRUE(a && b);
	std::mt19937 rng(2);
	Bytes disk = diskFrom(pool_, rng);
	ASSERT_TRUE(snapshot(*a, "snap-a", disk));
	// B reads snap-a (a restore holds its lease) while A deletes it and
	// tries gc: refused until B is done; the restore finishes whole.
	auto reading = b->lease(Lease::Kind::Shared, "restore snap-a");
	ASSERT_TRUE(reading) << describe(reading);
	ASSERT_TRUE(a->deleteManifest("snap-a"));
	GcOptions now;
	now.grace = std::chrono::seconds(0);
	auto refused = collectGarbage(*a, now);
	ASSERT_FALSE(refused);
	EXPECT_EQ(refused.error().code, errc::kIncorrectState);
	EXPECT_NE(refused.error().message.find("restore snap-a"), std::string::npos) << refused.error().message;
	// Still readable by chunk: nothing was removed.
	auto codec = b->newCodec();
	for (uint64_t s = 0; s < kSlots; s++) {
		std::span<const uint8_t> slot = std::span(disk).subspan(s * kChunk, kChunk);
		auto chunk = b->readChunk(*codec, codec->idOf(slot));
		ASSERT_TRUE(chunk) << describe(chunk);
	}
	reading->reset();
	// RADOS keeps object times in whole seconds: let the pack be older
	// than "no grace" by the backend's clock.
	std::this_thread::sleep_for(std::chrono::milliseconds(1100));
	auto swept = collectGarbage(*a, now);
	ASSERT_TRUE(swept) << describe(swept);
	EXPECT_GT(swept->packsRemoved, 0u);
}

// The race the leases exist for: host A commits snapshots whose chunks it
// finds by dedup among packs that host B's gc is deleting (B deletes the old
// snapshots and collects, with no grace period). Whatever the interleaving,
// no committed snapshot may name a chunk that is gone.
TEST_P(SharedStoreTest, GcOnOneHostRacedAgainstCommitsOnAnotherLosesNothing)
{
	auto a = host(), b = host();
	ASSERT_TRUE(a && b);
	const int rounds = GetParam() == "local" ? 400 : 200;
	std::mutex mutex;
	std::map<std::string, Bytes> kept; // committed and not deleted
	std::atomic<bool> writing{true};
	std::atomic<int> commits{0}, leaseRefusals{0}, gcRuns{0}, gcRefusals{0};

	std::thread writer([&] {
		std::mt19937 rng(3);
		for (int i = 0; i < rounds; i++) {
			std::string id = "snap-" + std::to_string(1000 + i);
			Bytes disk = diskFrom(pool_, rng);
			auto added = snapshot(*a, id, disk);
			if (!added) {
				leaseRefusals++;
				continue;
			}
			commits++;
			std::lock_guard lock(mutex);
			kept[id] = std::move(disk);
		}
		writing = false;
	});
	std::thread collector([&] {
		GcOptions now;
		now.grace = std::chrono::seconds(0);
		while (writing) {
			// Keep the newest two; everything older goes.
			std::vector<std::string> doomed;
			{
				std::lock_guard lock(mutex);
				while (kept.size() > 2) {
					doomed.push_back(kept.begin()->first);
					kept.erase(kept.begin());
				}
			}
			for (const std::string &id : doomed)
				EXPECT_TRUE(b->deleteManifest(id)) << id;
			auto r = collectGarbage(*b, now);
			if (r)
				gcRuns++;
			else if (r.error().code == errc::kIncorrectState)
				gcRefusals++;
			else
				ADD_FAILURE() << describe(r);
			// Room for the writer between two runs, so that the two
			// interleave rather than gc holding the store throughout.
			std::this_thread::sleep_for(std::chrono::milliseconds(3));
		}
	});
	writer.join();
	collector.join();
	std::printf("%d rounds on %s: %d commits, %d refused by gc; gc ran %d times, refused %d\n", rounds,
		    GetParam().c_str(), commits.load(), leaseRefusals.load(), gcRuns.load(), gcRefusals.load());
	EXPECT_GT(commits, 0);
	EXPECT_GT(gcRuns, 0) << "gc never ran between commits: the race was not run";

	// A third host checks: everything verifies, and what is kept restores.
	auto c = host();
	ASSERT_TRUE(c);
	auto report = verifySnapshots(*c, {});
	ASSERT_TRUE(report) << describe(report);
	EXPECT_TRUE(report->ok()) << (report->snapshots.empty() ? "" : report->snapshots.front().snapshotId);
	for (const auto &[id, disk] : kept)
		EXPECT_TRUE(restores(*c, id, disk));
}

INSTANTIATE_TEST_SUITE_P(, SharedStoreTest, ::testing::ValuesIn(virtsnap::test::backendNames()),
			 [](const auto &info) { return info.param; });

} // namespace
} // namespace virtsnap::store::test
