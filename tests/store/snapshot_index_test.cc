// SnapshotIndex: the slot grid, paging, zero pages, and the property the
// incremental design rests on: a save after one changed slot writes
// exactly one new page.
#include <thread>

#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "store/chunk_writer.h"
#include "store/snapshot_index.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {


// Every manifest here starts at the same time.
constexpr const char *kStartTime = "2026-01-01T00:00:00.000Z";

class SnapshotIndexTest : public OpenStoreTest
{
protected:
	SnapshotIndexTest() : OpenStoreTest(kChunk) {}

	// A plausible chunk id for slot `slot`, distinct per (slot, generation).
	ChunkId slotId(uint64_t slot, uint64_t generation = 0)
	{
		uint8_t in[16];
		putLe64(in, slot);
		putLe64(in + 8, generation);
		return codec_->idOf(in);
	}

	// save() with a fresh writer, committed; the writer is returned for
	// its counters.
	std::unique_ptr<ChunkWriter> saveCommitted(const SnapshotIndex &index, Manifest &m)
	{
		auto writer = store_->newWriter();
		auto r = index.save(*writer, *codec_, m);
		EXPECT_TRUE(r) << describe(r);
		auto c = writer->commit();
		EXPECT_TRUE(c) << describe(c);
		return writer;
	}

	void expectSameIds(const SnapshotIndex &a, const SnapshotIndex &b)
	{
		ASSERT_EQ(a.slots(), b.slots());
		EXPECT_EQ(a.volumeSize(), b.volumeSize());
		EXPECT_EQ(a.chunkSize(), b.chunkSize());
		size_t differing = 0;
		for (uint64_t s = 0; s < a.slots(); s++)
			differing += a.at(s) != b.at(s);
		EXPECT_EQ(differing, 0u);
	}

};

// clear() zeroes exactly its range, across pages, and allocates no page
// for a range that holds none: a hole the size of the disk costs nothing.
TEST_F(SnapshotIndexTest, ClearZeroesItsRangeAndAllocatesNothing)
{
	const uint64_t slots = 4 * SnapshotIndex::kPageEntries + 10;
	SnapshotIndex index(slots * kChunk, kChunk);
	index.clear(0, slots);
	EXPECT_EQ(index.pagesHeld(), 0u);
	for (uint64_t s = 0; s < slots; s += 7)
		index.set(s, slotId(s));
	const uint64_t first = SnapshotIndex::kPageEntries - 3, end = 3 * SnapshotIndex::kPageEntries + 5;
	index.clear(first, end);
	for (uint64_t s = 0; s < slots; s++)
		ASSERT_EQ(index.at(s), s % 7 != 0 || (s >= first && s < end) ? kZeroChunk : slotId(s)) << "slot " << s;
	index.clear(0, UINT64_MAX); // past the grid: clipped
	for (uint64_t s = 0; s < slots; s++)
		ASSERT_EQ(index.at(s), kZeroChunk) << "slot " << s;
}

TEST_F(SnapshotIndexTest, GridWithShortLastSlot)
{
	SnapshotIndex index(10 * kChunk + 100, kChunk);
	EXPECT_EQ(index.slots(), 11u);
	for (uint64_t s = 0; s < 10; s++)
		EXPECT_EQ(index.slotLength(s), kChunk) << s;
	EXPECT_EQ(index.slotLength(10), 100u);
	for (uint64_t s = 0; s < index.slots(); s++)
		EXPECT_TRUE(isZeroId(index.at(s))) << s;

	SnapshotIndex exact(8 * kChunk, kChunk);
	EXPECT_EQ(exact.slots(), 8u);
	EXPECT_EQ(exact.slotLength(7), kChunk);

	SnapshotIndex tiny(1, kChunk);
	EXPECT_EQ(tiny.slots(), 1u);
	EXPECT_EQ(tiny.slotLength(0), 1u);

	SnapshotIndex oneLess(kChunk - 1, kChunk);
	EXPECT_EQ(oneLess.slots(), 1u);
	EXPECT_EQ(oneLess.slotLength(0), kChunk - 1);

	SnapshotIndex empty(0, kChunk);
	EXPECT_EQ(empty.slots(), 0u);
}

TEST_F(SnapshotIndexTest, SaveThenLoadGivesIdenticalIdsAcrossPages)
{
	// 3000 slots: pages of 1024, 1024 and 952; the volume ends mid-chunk.
	uint64_t volume = 2999ull * kChunk + 123;
	SnapshotIndex index(volume, kChunk);
	ASSERT_EQ(index.slots(), 3000u);
	for (uint64_t s = 0; s < index.slots(); s++)
		if (s % 5 != 0) // some zero slots in every page
			index.set(s, slotId(s));

	Manifest m = manifestFor("snap-00000000000000001", kStartTime);
	auto writer = saveCommitted(index, m);
	EXPECT_EQ(m.volumeSize, volume);
	EXPECT_EQ(m.chunkSize, kChunk);
	EXPECT_EQ(m.pageEntries, SnapshotIndex::kPageEntries);
	ASSERT_EQ(m.indexPages.size(), 3u);
	EXPECT_EQ(writer->chunksNew(), 3u);
	for (const ChunkId &page : m.indexPages) {
		EXPECT_FALSE(isZeroId(page));
		EXPECT_TRUE(store_->contains(page));
	}
	// The last page holds exactly its 952 ids.
	auto last = store_->readChunk(*codec_, m.indexPages[2]);
	ASSERT_TRUE(last) << describe(last);
	EXPECT_EQ(last->size(), 952u * sizeof(ChunkId));
	auto first = store_->readChunk(*codec_, m.indexPages[0]);
	ASSERT_TRUE(first);
	EXPECT_EQ(first->size(), 1024u * sizeof(ChunkId));
	// Stored as index pages (type 2), FORMAT.md "Snapshot index".
	auto loc = store_->locate(m.indexPages[0]);
	ASSERT_TRUE(loc);
	auto blob = readFile(packPath(storeDir(), loc->pack));
	ASSERT_TRUE(blob);
	auto h = parseBlobHeader(std::span(*blob).subspan(loc->offset));
	ASSERT_TRUE(h);
	EXPECT_EQ(h->type, ChunkType::IndexPage);

	auto loaded = SnapshotIndex::load(*store_, *codec_, m);
	ASSERT_TRUE(loaded) << describe(loaded);
	expectSameIds(index, *loaded);
	EXPECT_EQ(loaded->slotLength(2999), 123u);

	// Through the store: manifest put, fresh Store, get, load.
	ASSERT_TRUE(store_->putManifest(m));
	auto fresh = openOrNull(storeDir(), keyFile());
	ASSERT_TRUE(fresh);
	auto got = fresh->getManifest(m.snapshotId);
	ASSERT_TRUE(got) << describe(got);
	auto freshCodec = fresh->newCodec();
	auto reloaded = SnapshotIndex::load(*fresh, *freshCodec, *got);
	ASSERT_TRUE(reloaded) << describe(reloaded);
	expectSameIds(index, *reloaded);
}

TEST_F(SnapshotIndexTest, ZeroPagesAreNotStored)
{
	SnapshotIndex index(3000ull * kChunk, kChunk);
	index.set(2500, slotId(2500)); // only the third page has a non-zero id

	Manifest m = manifestFor("snap-00000000000000002", kStartTime);
	auto writer = saveCommitted(index, m);
	ASSERT_EQ(m.indexPages.size(), 3u);
	EXPECT_TRUE(isZeroId(m.indexPages[0]));
	EXPECT_TRUE(isZeroId(m.indexPages[1]));
	EXPECT_FALSE(isZeroId(m.indexPages[2]));
	EXPECT_EQ(writer->chunksNew(), 1u);
	EXPECT_EQ(countPacks(), 1u);

	auto loaded = SnapshotIndex::load(*store_, *codec_, m);
	ASSERT_TRUE(loaded) << describe(loaded);
	expectSameIds(index, *loaded);
}

// A 2 TiB disk with data in two places: the index holds two pages (64 KiB),
// not 32 M ids (1 GiB), whether built by a capture or loaded.
TEST_F(SnapshotIndexTest, HolesCostNoMemory)
{
	const uint64_t size = 2ull << 40;
	SnapshotIndex index(size, Store::kDefaultChunkSize);
	ASSERT_EQ(index.slots(), 32ull << 20);
	EXPECT_EQ(index.pagesHeld(), 0u);
	const uint64_t last = index.slots() - 1;
	index.set(5, slotId(5));
	index.set(last, slotId(last));
	// A capture sets every hole's slot to the zero id.
	for (uint64_t s = 1 << 20; s < (1 << 20) + 5000; s++)
		index.set(s, kZeroChunk);
	EXPECT_EQ(index.pagesHeld(), 2u);
	EXPECT_EQ(index.at(5), slotId(5));
	EXPECT_EQ(index.at(last), slotId(last));
	EXPECT_TRUE(isZeroId(index.at(6)));
	EXPECT_TRUE(isZeroId(index.at(1 << 20)));

	Manifest m = manifestFor("snap-00000000000000004", kStartTime);
	auto writer = saveCommitted(index, m);
	EXPECT_EQ(writer->chunksNew(), 2u);
	auto loaded = SnapshotIndex::load(*store_, *codec_, m);
	ASSERT_TRUE(loaded) << describe(loaded);
	EXPECT_EQ(loaded->pagesHeld(), 2u);
	EXPECT_EQ(loaded->at(5), slotId(5));
	EXPECT_EQ(loaded->at(last), slotId(last));
	EXPECT_TRUE(isZeroId(loaded->at(1024)));
}

// The copy's workers set slots of one page at once, a page that did not
// exist yet: every id lands.
TEST_F(SnapshotIndexTest, ConcurrentSetsOfANewPageAllLand)
{
	SnapshotIndex index(64ull * 1024 * kChunk, kChunk);
	// Made first: a codec is one thread's.
	std::vector<ChunkId> ids;
	for (uint64_t s = 0; s < index.slots(); s++)
		ids.push_back(slotId(s));
	std::vector<std::thread> workers;
	for (unsigned w = 0; w < 4; w++)
		workers.emplace_back([&, w] {
			for (uint64_t s = w; s < index.slots(); s += 4)
				index.set(s, ids[s]);
		});
	for (auto &t : workers)
		t.join();
	EXPECT_EQ(index.pagesHeld(), 64u);
	for (uint64_t s = 0; s < index.slots(); s++)
		ASSERT_EQ(index.at(s), ids[s]) << "slot " << s;
}

TEST_F(SnapshotIndexTest, AllZeroIndexWritesNothing)
{
	SnapshotIndex index(3000ull * kChunk, kChunk);
	Manifest m = manifestFor("snap-00000000000000003", kStartTime);
	auto writer = saveCommitted(index, m);
	ASSERT_EQ(m.indexPages.size(), 3u);
	for (const ChunkId &page : m.indexPages)
		EXPECT_TRUE(isZeroId(page));
	EXPECT_EQ(writer->chunksNew(), 0u);
	EXPECT_EQ(writer->bytesAdded(), 0u);
	EXPECT_EQ(countPacks(), 0u);
	EXPECT_EQ(countTemps(), 0u);

	auto loaded = SnapshotIndex::load(*store_, *codec_, m);
	ASSERT_TRUE(loaded) << describe(loaded);
	expectSameIds(index, *loaded);
}

TEST_F(SnapshotIndexTest, IncrementalSaveWritesOnlyTheChangedPage)
{
	SnapshotIndex full(3000ull * kChunk, kChunk);
	for (uint64_t s = 0; s < full.slots(); s++)
		full.set(s, slotId(s));
	Manifest m1 = manifestFor("snap-00000000000000010", kStartTime);
	saveCommitted(full, m1);
	ASSERT_EQ(m1.indexPages.size(), 3u);
	size_t packsBefore = countPacks();

	// As a capture does: start from the parent's index, change one slot.
	auto incremental = SnapshotIndex::load(*store_, *codec_, m1);
	ASSERT_TRUE(incremental) << describe(incremental);
	incremental->set(1500, slotId(1500, 1));
	Manifest m2 = manifestFor("snap-00000000000000011", kStartTime);
	auto writer = saveCommitted(*incremental, m2);

	ASSERT_EQ(m2.indexPages.size(), 3u);
	EXPECT_EQ(m2.indexPages[0], m1.indexPages[0]);
	EXPECT_NE(m2.indexPages[1], m1.indexPages[1]);
	EXPECT_EQ(m2.indexPages[2], m1.indexPages[2]);
	EXPECT_EQ(writer->chunksNew(), 1u);
	EXPECT_EQ(writer->chunksReused(), 2u);
	auto loc = store_->locate(m2.indexPages[1]);
	ASSERT_TRUE(loc);
	EXPECT_EQ(writer->bytesAdded(), loc->length);
	// A page of 1024 keyed ids does not compress: one page blob.
	EXPECT_LE(writer->bytesAdded(), 1024 * sizeof(ChunkId) + kBlobOverhead);
	EXPECT_EQ(countPacks(), packsBefore + 1);

	// Both snapshots restore alone, each to its own ids.
	auto back1 = SnapshotIndex::load(*store_, *codec_, m1);
	auto back2 = SnapshotIndex::load(*store_, *codec_, m2);
	ASSERT_TRUE(back1 && back2);
	expectSameIds(full, *back1);
	expectSameIds(*incremental, *back2);
	EXPECT_EQ(back2->at(1500), slotId(1500, 1));
	EXPECT_EQ(back1->at(1500), slotId(1500));

	// Saving the unchanged index again costs nothing.
	Manifest m3 = manifestFor("snap-00000000000000012", kStartTime);
	auto same = saveCommitted(*incremental, m3);
	EXPECT_EQ(same->chunksNew(), 0u);
	EXPECT_EQ(same->bytesAdded(), 0u);
	EXPECT_EQ(m3.indexPages, m2.indexPages);
	EXPECT_EQ(countPacks(), packsBefore + 1);
}

TEST_F(SnapshotIndexTest, LoadFailsWhenAPageIsMissing)
{
	SnapshotIndex index(3000ull * kChunk, kChunk);
	for (uint64_t s = 0; s < index.slots(); s++)
		index.set(s, slotId(s));
	Manifest m = manifestFor("snap-00000000000000020", kStartTime);
	{
		// Saved but never committed: the pages do not exist.
		auto writer = store_->newWriter();
		ASSERT_TRUE(index.save(*writer, *codec_, m));
	}
	auto loaded = SnapshotIndex::load(*store_, *codec_, m);
	ASSERT_FALSE(loaded);
	EXPECT_NE(loaded.error().message.find(m.snapshotId), std::string::npos) << loaded.error().message;
}

TEST_F(SnapshotIndexTest, LoadRejectsAPageOfTheWrongSize)
{
	// A manifest claiming a larger volume than its pages cover: page 0 is
	// a full page but the manifest says the volume has only 10 slots.
	SnapshotIndex index(3000ull * kChunk, kChunk);
	for (uint64_t s = 0; s < index.slots(); s++)
		index.set(s, slotId(s));
	Manifest m = manifestFor("snap-00000000000000021", kStartTime);
	saveCommitted(index, m);
	Manifest lying = m;
	lying.volumeSize = 10 * kChunk;
	lying.indexPages.resize(1);
	auto loaded = SnapshotIndex::load(*store_, *codec_, lying);
	ASSERT_FALSE(loaded);
	EXPECT_EQ(loaded.error().code, errc::kCorrupt);
}

} // namespace
} // namespace virtsnap::store::test
