// The read side of the EBS direct APIs (engine/block_api.h) on a store in a
// directory, for chunks smaller than, equal to and larger than a 512 KiB
// block: which blocks are listed, which are changed, what a block reads as,
// paging, and tokens (forged, altered, misused, expired on an injected
// clock). What is expected is worked out from the disks' bytes here, never
// from the index.
#include <map>
#include <set>

#include "engine/block_api.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine {
namespace {

using store::test::describe;
using store::test::randomData;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
// Ten whole blocks and a partial one, so the last block is padded.
constexpr uint64_t kVolume = 10 * kBlockSize + 100 * kKiB;
const TimePoint kNow = TimePoint(std::chrono::seconds(1'800'000'000));

// A disk: zeros with `length` bytes of random data at `offset`.
void scribble(Bytes &disk, uint64_t offset, uint64_t length, uint64_t seed)
{
	Bytes data = randomData(length, seed);
	std::copy(data.begin(), data.end(), disk.begin() + offset);
}

class BlockApiTest : public store::test::WithOpenStore<store::test::StoreDirTest>,
		     public ::testing::WithParamInterface<uint32_t>
{
protected:
	BlockApiTest() : WithOpenStore(GetParam()) {}

	uint32_t chunk() const { return GetParam(); }

	// Stores `disk` as snapshot `id` of the test's volume (or `volumeId`).
	void save(const std::string &id, const Bytes &disk, const std::string &volumeId = "")
	{
		store::SnapshotIndex index(disk.size(), chunk());
		auto writer = store_->newWriter();
		ASSERT_NO_FATAL_FAILURE(putSlots(*writer, disk, index));
		store::Manifest m = store::test::manifestFor(id, isoTimeNow());
		if (!volumeId.empty())
			m.volumeId = volumeId;
		auto saved = index.save(*writer, *codec_, m);
		ASSERT_TRUE(saved) << describe(saved);
		auto committed = writer->commit();
		ASSERT_TRUE(committed) << describe(committed);
		auto put = store_->putManifest(m);
		ASSERT_TRUE(put) << describe(put);
	}

	// The bytes the chunks over block `b` cover: the block holds data, as
	// the API defines it, when any of them is not zero.
	std::span<const uint8_t> chunksOver(const Bytes &disk, uint64_t b) const
	{
		uint64_t begin = b * kBlockSize / chunk() * chunk();
		uint64_t end = std::min<uint64_t>(disk.size(), (b + 1) * kBlockSize);
		end = std::min<uint64_t>(disk.size(), (end + chunk() - 1) / chunk() * chunk());
		return std::span(disk.data() + begin, end - begin);
	}

	std::set<uint64_t> blocksWithData(const Bytes &disk) const
	{
		std::set<uint64_t> out;
		for (uint64_t b = 0; b < blockCount(disk.size()); b++)
			if (!isAllZero(chunksOver(disk, b)))
				out.insert(b);
		return out;
	}

	// What reading block `b` must give: its bytes, padded with zeros.
	static Bytes blockOf(const Bytes &disk, uint64_t b)
	{
		Bytes out(kBlockSize, 0);
		uint64_t end = std::min<uint64_t>(disk.size(), (b + 1) * kBlockSize);
		std::copy(disk.begin() + b * kBlockSize, disk.begin() + end, out.begin());
		return out;
	}

	std::map<uint64_t, std::string> listAll(const std::string &id, uint32_t maxResults, size_t *pages = nullptr)
	{
		std::map<uint64_t, std::string> out;
		BlockPage page{0, maxResults};
		for (size_t n = 1;; n++) {
			auto list = listSnapshotBlocks(*store_, id, page, kNow);
			EXPECT_TRUE(list) << describe(list);
			if (!list)
				return out;
			EXPECT_TRUE(list->blocks.size() <= maxResults);
			for (const ListedBlock &b : list->blocks)
				EXPECT_TRUE(out.emplace(b.index, b.token).second) << "listed twice: " << b.index;
			if (!list->next) {
				if (pages)
					*pages = n;
				return out;
			}
			// A NextToken never leads to an empty page.
			EXPECT_EQ(list->blocks.size(), maxResults);
			auto start = parseBlockCursor(blockCursor(*list->next));
			EXPECT_TRUE(start) << describe(start);
			page.start = *start;
		}
	}

	Bytes disk_ = Bytes(kVolume, 0);
};

TEST(BlockMapTest, BlocksOverTheChunkGrid)
{
	EXPECT_EQ(blockCount(0), 0u);
	EXPECT_EQ(blockCount(kBlockSize), 1u);
	EXPECT_EQ(blockCount(kBlockSize + 1), 2u);
	EXPECT_EQ(blockCount(1ull << 30), 2048u);
	// 64 KiB chunks: eight per block; the last block has what is left.
	SlotRange s = slotsOfBlock(kVolume, 64 * kKiB, 3);
	EXPECT_EQ(s.first, 24u);
	EXPECT_EQ(s.end, 32u);
	s = slotsOfBlock(kVolume, 64 * kKiB, 10);
	EXPECT_EQ(s.first, 80u);
	EXPECT_EQ(s.end, 82u); // 100 KiB: one whole chunk and a short one
	// 1 MiB chunks: two blocks per chunk.
	s = slotsOfBlock(kVolume, uint32_t(kMiB), 3);
	EXPECT_EQ(s.first, 1u);
	EXPECT_EQ(s.end, 2u);
	// Past the end: nothing.
	s = slotsOfBlock(kVolume, 64 * kKiB, 11);
	EXPECT_EQ(s.end, s.first);
}

TEST_P(BlockApiTest, ListsExactlyTheBlocksThatHoldDataAndReadsThemBack)
{
	scribble(disk_, 0, 4096, 1);                       // the first block
	scribble(disk_, 3 * kBlockSize + 200 * kKiB, 70000, 2); // across a chunk edge
	scribble(disk_, 6 * kBlockSize - 10, 20, 3);           // across a block edge
	scribble(disk_, 10 * kBlockSize + 99 * kKiB, 1024, 4); // the partial last block
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000001", disk_));

	auto listed = listAll("snap-00000000000000001", 10000);
	std::set<uint64_t> indexes;
	for (const auto &[b, token] : listed)
		indexes.insert(b);
	EXPECT_EQ(indexes, blocksWithData(disk_));
	EXPECT_TRUE(indexes.contains(10));

	for (const auto &[b, token] : listed) {
		auto data = getSnapshotBlock(*store_, "snap-00000000000000001", b, token, kNow);
		ASSERT_TRUE(data) << describe(data);
		EXPECT_EQ(data->size(), kBlockSize);
		EXPECT_TRUE(*data == blockOf(disk_, b)) << "block " << b;
	}
}

TEST_P(BlockApiTest, PagesFollowOneAnotherWithoutGapsOrRepeats)
{
	for (uint64_t b = 0; b < 11; b += 2) // six blocks with data
		scribble(disk_, b * kBlockSize + 1000, 100, b);
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000001", disk_));
	auto all = listAll("snap-00000000000000001", 10000);
	size_t pages = 0;
	EXPECT_EQ(listAll("snap-00000000000000001", 4, &pages), all);
	EXPECT_EQ(pages, (all.size() + 3) / 4);
	// Exactly a page's worth: no NextToken.
	auto exact = listSnapshotBlocks(*store_, "snap-00000000000000001", {0, uint32_t(all.size())}, kNow);
	ASSERT_TRUE(exact) << describe(exact);
	EXPECT_FALSE(exact->next);
	// From a starting index on.
	auto tail = listSnapshotBlocks(*store_, "snap-00000000000000001", {5, 10000}, kNow);
	ASSERT_TRUE(tail) << describe(tail);
	ASSERT_FALSE(tail->blocks.empty());
	EXPECT_GE(tail->blocks.front().index, 5u);
	EXPECT_EQ(tail->volumeSize, kVolume);
	EXPECT_EQ(tail->expiry, kNow + kBlockTokenLifetime);

	auto past = listSnapshotBlocks(*store_, "snap-00000000000000001", {11, 10000}, kNow);
	ASSERT_FALSE(past);
	EXPECT_EQ(past.error().code, errc::kInvalidParameterValue);
	for (const std::string &bad : std::vector<std::string>{"", "garbage", blockCursor(3).substr(1), "dmlydHNuYXAtYmxvY2tzLWZyb206eA=="})
		EXPECT_FALSE(parseBlockCursor(bad)) << bad;
}

TEST_P(BlockApiTest, ChangedBlocksAreTheRewrittenOnesInEitherOrder)
{
	scribble(disk_, 0, 3 * kBlockSize, 1);
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000001", disk_));
	Bytes before = disk_;
	scribble(disk_, kBlockSize + 4096, 4096, 2);    // rewritten
	std::fill_n(disk_.begin() + 2 * kBlockSize, kBlockSize, 0); // zeroed: no second token
	scribble(disk_, 7 * kBlockSize, 10, 3);         // new: no first token
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000002", disk_));

	std::set<uint64_t> expected;
	for (uint64_t b = 0; b < blockCount(kVolume); b++) {
		auto x = chunksOver(before, b), y = chunksOver(disk_, b);
		if (!std::equal(x.begin(), x.end(), y.begin(), y.end()))
			expected.insert(b);
	}
	for (auto [first, second] : {std::pair{"snap-00000000000000001", "snap-00000000000000002"},
				     std::pair{"snap-00000000000000002", "snap-00000000000000001"}}) {
		auto changed = listChangedBlocks(*store_, first, second, {0, 10000}, kNow);
		ASSERT_TRUE(changed) << describe(changed);
		std::set<uint64_t> got;
		for (const ChangedBlock &c : changed->blocks) {
			got.insert(c.index);
			const Bytes &a = std::string(first) == "snap-00000000000000001" ? before : disk_;
			const Bytes &b = std::string(second) == "snap-00000000000000001" ? before : disk_;
			EXPECT_EQ(c.firstToken.empty(), isAllZero(chunksOver(a, c.index))) << c.index;
			EXPECT_EQ(c.secondToken.empty(), isAllZero(chunksOver(b, c.index))) << c.index;
			if (!c.firstToken.empty()) {
				auto data = getSnapshotBlock(*store_, first, c.index, c.firstToken, kNow);
				ASSERT_TRUE(data) << describe(data);
				EXPECT_TRUE(*data == blockOf(a, c.index));
			}
			if (!c.secondToken.empty()) {
				auto data = getSnapshotBlock(*store_, second, c.index, c.secondToken, kNow);
				ASSERT_TRUE(data) << describe(data);
				EXPECT_TRUE(*data == blockOf(b, c.index));
			}
		}
		EXPECT_EQ(got, expected);
	}
	// Without a first snapshot: every block of the second with data.
	auto all = listChangedBlocks(*store_, "", "snap-00000000000000002", {0, 10000}, kNow);
	ASSERT_TRUE(all) << describe(all);
	std::set<uint64_t> got;
	for (const ChangedBlock &c : all->blocks) {
		got.insert(c.index);
		EXPECT_TRUE(c.firstToken.empty());
	}
	EXPECT_EQ(got, blocksWithData(disk_));
}

TEST_P(BlockApiTest, AVolumeThatGrewHasItsNewBlocksChanged)
{
	scribble(disk_, kBlockSize, 1000, 1);
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000001", disk_));
	Bytes grown = disk_;
	grown.resize(kVolume + 2 * kMiB, 0);
	scribble(grown, 12 * kBlockSize, 1000, 2);
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000002", grown));
	auto changed = listChangedBlocks(*store_, "snap-00000000000000001", "snap-00000000000000002", {0, 10000}, kNow);
	ASSERT_TRUE(changed) << describe(changed);
	ASSERT_FALSE(changed->blocks.empty());
	EXPECT_EQ(changed->volumeSize, grown.size());
	const ChangedBlock &last = changed->blocks.back();
	EXPECT_EQ(last.index, chunk() > kBlockSize ? 13u : 12u);
	EXPECT_TRUE(last.firstToken.empty());
	EXPECT_FALSE(last.secondToken.empty());
	for (const ChangedBlock &c : changed->blocks)
		EXPECT_GE(c.index, 10u) << "block " << c.index << " did not change";
}

TEST_P(BlockApiTest, SnapshotsOfAnotherVolumeAreRefused)
{
	scribble(disk_, 0, 100, 1);
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000001", disk_));
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000002", disk_, volumeIdFor("name:other", "vda")));
	auto r = listChangedBlocks(*store_, "snap-00000000000000001", "snap-00000000000000002", {0, 10000}, kNow);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kInvalidParameterValue);
	EXPECT_NE(r.error().message.find("not of the same volume"), std::string::npos) << r.error().message;
}

TEST_P(BlockApiTest, ForgedAlteredMisusedAndExpiredTokensAreRefused)
{
	scribble(disk_, 0, 2 * kBlockSize, 1);
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000001", disk_));
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000002", disk_));
	const std::string id = "snap-00000000000000001";
	auto listed = listAll(id, 10000);
	ASSERT_TRUE(listed.contains(0) && listed.contains(1));
	std::string token = listed[0];

	auto refused = [&](const std::string &snap, uint64_t block, const std::string &t, TimePoint now,
			   const std::string &says) {
		auto r = getSnapshotBlock(*store_, snap, block, t, now);
		ASSERT_FALSE(r) << "accepted: " << t;
		EXPECT_EQ(r.error().code, errc::kInvalidParameterValue);
		EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
	};
	Bytes forged = randomData(41, 7);
	forged[0] = 1;
	refused(id, 0, crypto::base64(forged), kNow, "not valid");
	refused(id, 0, "not a token", kNow, "not a block token");
	// Each byte of the MAC and of the expiry matters; an expiry moved into
	// the future fails as a forgery.
	Bytes raw = *crypto::fromBase64(token);
	for (size_t i : {size_t(1), size_t(5), size_t(9), raw.size() - 1}) {
		Bytes altered = raw;
		altered[i] ^= 0x01;
		refused(id, 0, crypto::base64(altered), kNow, "not valid");
	}
	refused(id, 1, token, kNow, "not valid");                     // another block
	refused("snap-00000000000000002", 0, token, kNow, "not valid"); // another snapshot, same content

	// Expiry, on an injected clock: good until seven days after the listing.
	auto justBefore = kNow + kBlockTokenLifetime - std::chrono::seconds(1);
	EXPECT_TRUE(getSnapshotBlock(*store_, id, 0, token, justBefore));
	refused(id, 0, token, kNow + kBlockTokenLifetime, "expired");
	// A token another key domain minted means nothing here.
	auto other = store::KeyDomain::generate();
	ASSERT_TRUE(other);
	auto identity = blockIdentity(*store::SnapshotIndex::load(*store_, *codec_, *store_->getManifest(id)), 0);
	ASSERT_TRUE(identity);
	refused(id, 0, BlockTokens(*other).mint(id, 0, *identity, kNow + std::chrono::hours(1)), kNow, "not valid");
	EXPECT_TRUE(getSnapshotBlock(*store_, id, 0, BlockTokens(store_->domain()).mint(id, 0, *identity, kNow + std::chrono::hours(1)), kNow));
}

TEST_P(BlockApiTest, BadBlocksAndSnapshotsAreOneLineErrors)
{
	scribble(disk_, 0, 100, 1);
	ASSERT_NO_FATAL_FAILURE(save("snap-00000000000000001", disk_));
	std::string token = listAll("snap-00000000000000001", 10000).at(0);
	auto code = [&](const std::string &id, uint64_t block) {
		auto r = getSnapshotBlock(*store_, id, block, token, kNow);
		return r ? std::string("ok") : r.error().code;
	};
	EXPECT_EQ(code("snap-00000000000000001", 0), "ok");
	EXPECT_EQ(code("snap-00000000000000001", 11), errc::kInvalidParameterValue);
	EXPECT_EQ(code("snap-00000000000000001", 5), errc::kInvalidParameterValue); // zeros: no token fits
	EXPECT_EQ(code("snap-00000000000000009", 0), errc::kSnapshotNotFound);
	EXPECT_EQ(code("snap-XYZ", 0), errc::kSnapshotIdMalformed);
}

INSTANTIATE_TEST_SUITE_P(ChunkSizes, BlockApiTest, ::testing::Values(4096u, 64u * 1024, 512u * 1024, 1024u * 1024),
			 [](const ::testing::TestParamInfo<uint32_t> &info) {
				 return std::to_string(info.param / 1024) + "KiB";
			 });

} // namespace
} // namespace virtsnap::engine
