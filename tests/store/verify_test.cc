// verifySnapshots against FORMAT.md ("Verification"): a clean store passes,
// and every kind of damage (a flipped bit in a chunk or an index page, a
// lost pack, a chunk stored under the wrong id, a chunk of the wrong
// length, a lost manifest) marks exactly the snapshots that need the
// damaged object, naming it, without failing the call. On every backend.
#include <sys/stat.h>

#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "store/pack.h"
#include "store/snapshot_index.h"
#include "store/verify.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

// Both disks end 100 bytes into their last chunk: a short last slot.
constexpr size_t kShort = 100;

std::string shortHex(const ChunkId &id)
{
	return idHex(id).substr(0, 16);
}

bool anyContains(const std::vector<std::string> &lines, const std::string &part)
{
	return std::any_of(lines.begin(), lines.end(),
			   [&](const std::string &l) { return l.find(part) != std::string::npos; });
}

std::string joined(const std::vector<std::string> &lines)
{
	std::string out;
	for (const std::string &l : lines)
		out += "\n  " + l;
	return out;
}

class VerifyTest : public OpenBackendStoreTest
{
protected:
	VerifyTest() : OpenBackendStoreTest(kChunk) {}

	void SetUp() override
	{
		OpenBackendStoreTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		// A's own chunks compressible (an odd seed), the others random.
		shared_ = chunks(kSlots, 1000);
		onlyA_ = chunks(kSlots, 2001);
		onlyB_ = chunks(kSlots, 3000);
		onlyA_.back().resize(kShort);
		onlyB_.back().resize(kShort);
		// A zero slot in each: never stored, always fine.
		std::fill(onlyA_[4].begin(), onlyA_[4].end(), 0);
		std::fill(onlyB_[4].begin(), onlyB_[4].end(), 0);
		diskA_ = concat({shared_, onlyA_});
		diskB_ = concat({shared_, onlyB_});
		snapshot("snap-a", diskA_);
		snapshot("snap-b", diskB_);
	}

	// Stores the index `ids` (with the given volume size) as snapshot `id`.
	void saveIndex(const std::string &id, const SnapshotIndex &index)
	{
		auto writer = store_->newWriter();
		saveSnapshot(id, index, *writer);
	}

	// The chunks through one writer, the index pages through another.
	void snapshot(const std::string &id, const Bytes &disk)
	{
		auto writer = store_->newWriter();
		SnapshotIndex index(disk.size(), kChunk);
		ASSERT_NO_FATAL_FAILURE(putSlots(*writer, disk, index));
		auto committed = writer->commit();
		ASSERT_TRUE(committed) << describe(committed);
		saveIndex(id, index);
	}

	VerifyReport verify(const std::vector<std::string> &ids = {}, unsigned threads = 0)
	{
		auto r = verifySnapshots(*store_, ids, threads);
		EXPECT_TRUE(r) << describe(r);
		return r ? *r : VerifyReport{};
	}

	// Flips a byte in the middle of the ciphertext of each blob of `ids`.
	void damage(const std::vector<ChunkId> &ids)
	{
		std::map<std::string, std::vector<uint64_t>> byPack;
		for (const ChunkId &id : ids) {
			auto loc = store_->locate(id);
			ASSERT_TRUE(loc);
			byPack[packName(loc->pack)].push_back(loc->offset + kBlobHeaderSize +
							      (loc->length - kBlobOverhead) / 2);
		}
		for (const auto &[pack, offsets] : byPack)
			ASSERT_NO_FATAL_FAILURE(flipObjectBytes(*backend_, pack, offsets));
	}

	std::string packHex(const ChunkId &id)
	{
		auto loc = store_->locate(id);
		EXPECT_TRUE(loc);
		return loc ? toHex(loc->pack) : std::string("?");
	}

	ChunkId pageOf(const std::string &snapshotId)
	{
		auto m = store_->getManifest(snapshotId);
		EXPECT_TRUE(m) << describe(m);
		return m && !m->indexPages.empty() ? m->indexPages[0] : ChunkId{};
	}

	std::vector<Bytes> shared_, onlyA_, onlyB_;
	Bytes diskA_, diskB_;
};

TEST_P(VerifyTest, CleanStoreVerifiesEveryChunkOnce)
{
	VerifyReport r = verify();
	ASSERT_EQ(r.snapshots.size(), 2u);
	EXPECT_EQ(r.snapshots[0].snapshotId, "snap-a");
	EXPECT_EQ(r.snapshots[1].snapshotId, "snap-b");
	for (const SnapshotVerification &s : r.snapshots) {
		EXPECT_TRUE(s.ok) << s.snapshotId << joined(s.problems);
		EXPECT_EQ(s.damagedChunks, 0u);
	}
	EXPECT_TRUE(r.ok());
	EXPECT_EQ(r.snapshotsDamaged, 0u);
	EXPECT_EQ(r.chunksDamaged, 0u);
	EXPECT_TRUE(r.storeProblems.empty());

	// Shared chunks once: 16 shared, 15 + 15 own (one zero each), 2 pages.
	const uint64_t distinct = kSlots + 2 * (kSlots - 1) + 2;
	EXPECT_EQ(r.chunksChecked, distinct);
	uint64_t blobBytes = 0;
	std::set<ChunkId> ids;
	for (const auto *part : {&shared_, &onlyA_, &onlyB_})
		for (const Bytes &d : *part)
			if (!isAllZero(d))
				ids.insert(codec_->idOf(d));
	ids.insert(pageOf("snap-a"));
	ids.insert(pageOf("snap-b"));
	ASSERT_EQ(ids.size(), distinct);
	for (const ChunkId &id : ids)
		blobBytes += store_->locate(id)->length;
	EXPECT_EQ(r.bytesRead, blobBytes);
	const uint64_t pageBytes = 2 * (2 * kSlots) * sizeof(ChunkId);
	EXPECT_EQ(r.bytesChecked, kSlots * kChunk + 2 * ((kSlots - 2) * kChunk + kShort) + pageBytes);

	// Asking for them by id gives the same, in the order asked.
	VerifyReport asked = verify({"snap-b", "snap-a", "snap-b"});
	ASSERT_EQ(asked.snapshots.size(), 2u);
	EXPECT_EQ(asked.snapshots[0].snapshotId, "snap-b");
	EXPECT_TRUE(asked.ok());
	EXPECT_EQ(asked.chunksChecked, distinct);
}

TEST_P(VerifyTest, DamagedChunkOfOneSnapshotDamagesThatSnapshotOnly)
{
	ChunkId bad = codec_->idOf(onlyA_[2]);
	damage({bad});
	VerifyReport r = verify();
	ASSERT_EQ(r.snapshots.size(), 2u);
	const SnapshotVerification &a = r.snapshots[0];
	EXPECT_FALSE(a.ok);
	ASSERT_EQ(a.problems.size(), 1u) << joined(a.problems);
	EXPECT_NE(a.problems[0].find(shortHex(bad)), std::string::npos) << a.problems[0];
	EXPECT_NE(a.problems[0].find(packHex(bad)), std::string::npos) << a.problems[0];
	EXPECT_NE(a.problems[0].find("slot " + std::to_string(kSlots + 2)), std::string::npos) << a.problems[0];
	EXPECT_NE(a.problems[0].find("authentication failed"), std::string::npos) << a.problems[0];
	EXPECT_EQ(a.damagedChunks, 1u);
	EXPECT_TRUE(r.snapshots[1].ok) << joined(r.snapshots[1].problems);
	EXPECT_EQ(r.snapshotsDamaged, 1u);
	EXPECT_EQ(r.chunksDamaged, 1u);
	EXPECT_FALSE(r.ok());
}

TEST_P(VerifyTest, DamagedSharedChunkDamagesEverySnapshotThatNeedsIt)
{
	ChunkId bad = codec_->idOf(shared_[5]);
	damage({bad});
	VerifyReport r = verify();
	ASSERT_EQ(r.snapshots.size(), 2u);
	for (const SnapshotVerification &s : r.snapshots) {
		EXPECT_FALSE(s.ok) << s.snapshotId;
		ASSERT_EQ(s.problems.size(), 1u) << s.snapshotId << joined(s.problems);
		EXPECT_NE(s.problems[0].find(shortHex(bad)), std::string::npos) << s.problems[0];
		EXPECT_NE(s.problems[0].find("slot 5"), std::string::npos) << s.problems[0];
	}
	EXPECT_EQ(r.chunksDamaged, 1u); // read once
	EXPECT_EQ(r.snapshotsDamaged, 2u);
}

TEST_P(VerifyTest, DamagedIndexPage)
{
	ChunkId page = pageOf("snap-b");
	damage({page});
	VerifyReport r = verify();
	ASSERT_EQ(r.snapshots.size(), 2u);
	EXPECT_TRUE(r.snapshots[0].ok) << joined(r.snapshots[0].problems);
	const SnapshotVerification &b = r.snapshots[1];
	EXPECT_FALSE(b.ok);
	ASSERT_EQ(b.problems.size(), 1u) << joined(b.problems);
	EXPECT_NE(b.problems[0].find("index page 0"), std::string::npos) << b.problems[0];
	EXPECT_NE(b.problems[0].find(shortHex(page)), std::string::npos) << b.problems[0];
	EXPECT_NE(b.problems[0].find("authentication failed"), std::string::npos) << b.problems[0];
}

TEST_P(VerifyTest, LostPackFileIsDamageNotAFailure)
{
	// The shared chunks are in A's pack (A was stored first).
	ChunkId shared = codec_->idOf(shared_[0]);
	ChunkId own = codec_->idOf(onlyA_[0]);
	ASSERT_EQ(packHex(shared), packHex(own));
	std::string pack = packHex(shared);
	PackId packId = store_->locate(shared)->pack;
	ASSERT_TRUE(removedObject(*backend_, packName(packId)));

	// A fresh Store: this one may still hold the file open.
	store_ = openOrNull();
	ASSERT_TRUE(store_);
	VerifyReport r = verify();
	ASSERT_EQ(r.snapshots.size(), 2u);
	const SnapshotVerification &a = r.snapshots[0];
	EXPECT_FALSE(a.ok);
	// Every chunk of A (its page went to a pack of its own).
	EXPECT_EQ(a.problems.size(), 2 * kSlots - 1) << joined(a.problems);
	EXPECT_TRUE(anyContains(a.problems, "its pack is missing")) << joined(a.problems);
	// B's own chunks are elsewhere; the shared ones are gone.
	const SnapshotVerification &b = r.snapshots[1];
	EXPECT_FALSE(b.ok);
	EXPECT_EQ(b.problems.size(), kSlots) << joined(b.problems);
	EXPECT_EQ(b.damagedChunks, kSlots);
	EXPECT_TRUE(anyContains(b.problems, shortHex(shared))) << joined(b.problems);
	EXPECT_TRUE(anyContains(b.problems, pack)) << joined(b.problems);
	EXPECT_FALSE(anyContains(b.problems, shortHex(codec_->idOf(onlyB_[0])))) << joined(b.problems);

	// Without its index too, the chunks are simply missing.
	ASSERT_TRUE(removedObject(*backend_, packIndexName(packId)));
	store_ = openOrNull();
	ASSERT_TRUE(store_);
	r = verify({"snap-b"});
	ASSERT_EQ(r.snapshots.size(), 1u);
	EXPECT_EQ(r.snapshots[0].problems.size(), kSlots) << joined(r.snapshots[0].problems);
	EXPECT_TRUE(anyContains(r.snapshots[0].problems, "missing")) << joined(r.snapshots[0].problems);
}

TEST_P(VerifyTest, ChunkStoredUnderAWrongId)
{
	// A well-formed blob whose header, index entry and snapshot all say
	// `liar`, holding other content: only re-hashing can tell.
	Bytes content = randomData(kChunk, 77);
	ChunkId liar = codec_->idOf(randomData(kChunk, 78));
	Bytes blob;
	ASSERT_TRUE(codec_->encode(liar, ChunkType::Data, content, blob));
	auto pack = PackWriter::create(store_->backend());
	ASSERT_TRUE(pack) << describe(pack);
	ASSERT_TRUE(pack->append({liar, ChunkType::Data, blob[5], kChunk, blob}));
	ASSERT_TRUE(pack->finish(store_->domain()));
	ASSERT_TRUE(store_->refresh());
	// readChunk alone does not notice.
	auto read = store_->readChunk(*codec_, liar);
	ASSERT_TRUE(read) << describe(read);

	SnapshotIndex index(2 * kChunk, kChunk);
	index.set(0, codec_->idOf(shared_[0]));
	index.set(1, liar);
	saveIndex("snap-c", index);
	VerifyReport r = verify({"snap-c", "snap-a"});
	ASSERT_EQ(r.snapshots.size(), 2u);
	const SnapshotVerification &c = r.snapshots[0];
	EXPECT_FALSE(c.ok);
	ASSERT_EQ(c.problems.size(), 1u) << joined(c.problems);
	EXPECT_NE(c.problems[0].find(shortHex(liar)), std::string::npos) << c.problems[0];
	EXPECT_NE(c.problems[0].find("does not hash to its id"), std::string::npos) << c.problems[0];
	EXPECT_NE(c.problems[0].find("slot 1"), std::string::npos) << c.problems[0];
	EXPECT_TRUE(r.snapshots[1].ok) << joined(r.snapshots[1].problems);
}

TEST_P(VerifyTest, ChunkOfTheWrongLengthForItsSlot)
{
	// The short last chunk of A in a middle slot, and a full chunk in the
	// short last slot: each decodes fine, neither fits.
	ChunkId shortChunk = codec_->idOf(onlyA_.back());
	ChunkId fullChunk = codec_->idOf(shared_[1]);
	SnapshotIndex index(3 * kChunk + kShort, kChunk);
	index.set(0, codec_->idOf(shared_[0]));
	index.set(1, shortChunk);
	index.set(2, shortChunk);
	index.set(3, fullChunk);
	saveIndex("snap-c", index);

	VerifyReport r = verify();
	ASSERT_EQ(r.snapshots.size(), 3u);
	EXPECT_TRUE(r.snapshots[0].ok) << joined(r.snapshots[0].problems); // A: the same chunks where they fit
	EXPECT_TRUE(r.snapshots[1].ok) << joined(r.snapshots[1].problems);
	const SnapshotVerification &c = r.snapshots[2];
	EXPECT_FALSE(c.ok);
	ASSERT_EQ(c.problems.size(), 2u) << joined(c.problems);
	EXPECT_NE(c.problems[0].find(shortHex(shortChunk)), std::string::npos) << c.problems[0];
	EXPECT_NE(c.problems[0].find("slot 1 and 1 more"), std::string::npos) << c.problems[0];
	EXPECT_NE(c.problems[0].find("has 100 bytes; the slot needs 4096"), std::string::npos) << c.problems[0];
	EXPECT_NE(c.problems[1].find(shortHex(fullChunk)), std::string::npos) << c.problems[1];
	EXPECT_NE(c.problems[1].find("has 4096 bytes; the slot needs 100"), std::string::npos) << c.problems[1];
	EXPECT_EQ(r.chunksDamaged, 0u); // the chunks are sound; C is not
}

TEST_P(VerifyTest, UnknownOrUnreadableSnapshotIsReportedNotFailed)
{
	VerifyReport r = verify({"snap-nope", "snap-b"});
	ASSERT_EQ(r.snapshots.size(), 2u);
	EXPECT_EQ(r.snapshots[0].snapshotId, "snap-nope");
	EXPECT_FALSE(r.snapshots[0].ok);
	ASSERT_EQ(r.snapshots[0].problems.size(), 1u);
	EXPECT_NE(r.snapshots[0].problems[0].find(errc::kSnapshotNotFound), std::string::npos)
		<< r.snapshots[0].problems[0];
	EXPECT_TRUE(r.snapshots[1].ok) << joined(r.snapshots[1].problems);

	const std::string manifest = "snapshots/snap-a.manifest";
	flipObjectByte(*backend_, manifest, objectSize(*backend_, manifest) - 3);
	r = verify();
	ASSERT_EQ(r.snapshots.size(), 2u);
	EXPECT_FALSE(r.snapshots[0].ok);
	EXPECT_TRUE(anyContains(r.snapshots[0].problems, errc::kCorrupt)) << joined(r.snapshots[0].problems);
	EXPECT_TRUE(r.snapshots[1].ok) << joined(r.snapshots[1].problems);
}

TEST_P(VerifyTest, ChunkMissingFromEveryPack)
{
	SnapshotIndex index(2 * kChunk, kChunk);
	ChunkId ghost = codec_->idOf(randomData(kChunk, 99));
	index.set(0, ghost);
	index.set(1, codec_->idOf(shared_[0]));
	saveIndex("snap-c", index);
	VerifyReport r = verify({"snap-c"});
	ASSERT_EQ(r.snapshots.size(), 1u);
	ASSERT_EQ(r.snapshots[0].problems.size(), 1u) << joined(r.snapshots[0].problems);
	EXPECT_NE(r.snapshots[0].problems[0].find(shortHex(ghost)), std::string::npos);
	EXPECT_NE(r.snapshots[0].problems[0].find("missing"), std::string::npos);
}

TEST_P(VerifyTest, ProblemsAreCappedAndOneChunkInManySlotsIsOneProblem)
{
	// 300 slots; every other one the same chunk, the rest distinct.
	SnapshotIndex index(300 * kChunk, kChunk);
	auto writer = store_->newWriter();
	Bytes same = randomData(kChunk, 500);
	std::vector<ChunkId> distinct;
	for (uint64_t s = 0; s < 300; s++) {
		Bytes d = s % 2 ? same : randomData(kChunk, 1000 + s);
		auto id = writer->put(*codec_, d, ChunkType::Data);
		ASSERT_TRUE(id);
		index.set(s, *id);
		if (s % 2 == 0)
			distinct.push_back(*id);
	}
	ASSERT_TRUE(writer->commit());
	saveIndex("snap-c", index);
	distinct.push_back(codec_->idOf(same));
	damage(distinct);

	VerifyReport r = verify({"snap-c"}, 3);
	ASSERT_EQ(r.snapshots.size(), 1u);
	const SnapshotVerification &c = r.snapshots[0];
	EXPECT_EQ(c.damagedChunks, 151u);
	ASSERT_EQ(c.problems.size(), kMaxProblems + 1);
	EXPECT_NE(c.problems[1].find("slot 1 and 149 more"), std::string::npos) << c.problems[1];
	EXPECT_EQ(c.problems.back(), "... and 51 more problems");
}

TEST_P(VerifyTest, SameResultWithOneWorkerOrMany)
{
	damage({codec_->idOf(shared_[3]), codec_->idOf(onlyB_[7]), pageOf("snap-a")});
	VerifyReport one = verify({}, 1);
	VerifyReport many = verify({}, 8);
	ASSERT_EQ(one.snapshots.size(), many.snapshots.size());
	for (size_t i = 0; i < one.snapshots.size(); i++) {
		EXPECT_EQ(one.snapshots[i].ok, many.snapshots[i].ok);
		EXPECT_EQ(one.snapshots[i].problems, many.snapshots[i].problems);
	}
	EXPECT_EQ(one.chunksChecked, many.chunksChecked);
	EXPECT_EQ(one.chunksDamaged, many.chunksDamaged);
	EXPECT_EQ(one.bytesRead, many.bytesRead);
	EXPECT_EQ(one.chunksDamaged, 3u);
	EXPECT_FALSE(one.snapshots[0].ok);
	EXPECT_FALSE(one.snapshots[1].ok);
	EXPECT_EQ(one.snapshots[1].problems.size(), 2u) << joined(one.snapshots[1].problems);
}

TEST_P(VerifyTest, EmptyStoreVerifiesNothing)
{
	std::unique_ptr<Backend> backend;
	std::string url;
	REQUIRE_BACKEND(GetParam(), backend, url);
	auto key = root_ / "keys" / "empty.key";
	bool created = false;
	ASSERT_TRUE(Store::init(*backend, key, kChunk, &created));
	auto empty = Store::open(std::move(backend), key);
	ASSERT_TRUE(empty) << describe(empty);
	auto r = verifySnapshots(**empty, {});
	ASSERT_TRUE(r) << describe(r);
	EXPECT_TRUE(r->snapshots.empty());
	EXPECT_TRUE(r->ok());
	EXPECT_EQ(r->chunksChecked, 0u);
}

INSTANTIATE_TEST_SUITE_P(, VerifyTest, ::testing::ValuesIn(virtsnap::test::backendNames()), backendSuffix);

} // namespace
} // namespace virtsnap::store::test
