// The chunk map kept in the state directory (chunk_map_cache.h): a later
// open finds what an earlier one learnt without reading those pack indexes
// again, forgets the packs gc removed, and rebuilds from the pack indexes
// whatever cache it cannot trust, answering as a fresh map would.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include "store/chunk_map_cache.h"
#include "store/key_domain.h"
#include "store/pack.h"
#include "store_test_util.h"
#include "tests/support/synthetic_chunk_ids.h"

namespace virtsnap::store::test {
namespace {

constexpr uint32_t kCachePerPack = 300;

// Chunk n of pack p: a uniform id, and an offset that says which it is.
ChunkId cachedChunkId(uint32_t pack, uint32_t i)
{
	return virtsnap::test::syntheticChunkId(uint64_t(pack) * kCachePerPack + i);
}

uint64_t cachedChunkOffset(uint32_t i)
{
	return kPackHeaderSize + uint64_t(i) * 1000;
}

void writeCacheTestFile(const fs::path &path, const std::string &bytes)
{
	std::ofstream out(path, std::ios::binary | std::ios::trunc);
	out << bytes;
	ASSERT_TRUE(out.good()) << path;
}

class ChunkMapCacheTest : public StoreDirTest
{
protected:
	fs::path stateDir() const { return root_ / "state"; }

	PackId packIdOf(uint32_t pack) const
	{
		PackId id;
		uint64_t seed = pack + 7919;
		for (size_t i = 0; i < id.size(); i += 8) {
			uint64_t w = virtsnap::test::splitmix64(seed);
			std::memcpy(id.data() + i, &w, 8);
		}
		return id;
	}

	fs::path indexFile(uint32_t pack, const fs::path &store = {}) const
	{
		return (store.empty() ? storeDir() : store) / packIndexName(packIdOf(pack));
	}

	// A pack index naming kCachePerPack chunks (no pack behind it: the map
	// learns from indexes alone), written straight into the directory; the
	// chunks of pack `chunksOf` when another one's.
	void writeIndex(const Store &store, uint32_t pack, const fs::path &dir = {}, int64_t chunksOf = -1)
	{
		PackIndex index;
		index.packId = packIdOf(pack);
		uint32_t source = chunksOf < 0 ? pack : uint32_t(chunksOf);
		for (uint32_t i = 0; i < kCachePerPack; i++)
			index.entries.push_back(
				PackEntry{cachedChunkId(source, i), ChunkType::Data, 0, cachedChunkOffset(i), 1000, 4096});
		const KeyDomain &domain = store.domain();
		auto sealed = sealObject(ObjectType::PackIndex, domain.id, domain.encKey, toHex(index.packId),
					 serializePackIndex(index));
		ASSERT_TRUE(sealed);
		fs::create_directories(indexFile(pack, dir).parent_path());
		writeCacheTestFile(indexFile(pack, dir), std::string(sealed->begin(), sealed->end()));
	}

	std::unique_ptr<Store> openCached()
	{
		StoreOptions options;
		options.stateDir = stateDir();
		auto s = Store::open(storeDir(), keyFile(), options);
		EXPECT_TRUE(s) << describe(s);
		return s ? std::move(*s) : nullptr;
	}

	// Every chunk of packs [first, end) found where its index says, and
	// none of `absent`.
	void expectFound(const Store &store, uint32_t first, uint32_t end, const std::vector<uint32_t> &absent = {})
	{
		for (uint32_t p = first; p < end; p++)
			for (uint32_t i = 0; i < kCachePerPack; i++) {
				auto where = store.locate(cachedChunkId(p, i));
				ASSERT_TRUE(where) << "pack " << p << " chunk " << i;
				EXPECT_EQ(where->pack, packIdOf(p)) << "pack " << p << " chunk " << i;
				ASSERT_EQ(where->offset, cachedChunkOffset(i)) << "pack " << p << " chunk " << i;
			}
		for (uint32_t p : absent)
			for (uint32_t i = 0; i < kCachePerPack; i++)
				ASSERT_FALSE(store.contains(cachedChunkId(p, i))) << "pack " << p << " chunk " << i;
	}

	// Pack index files that no open can read: an open that reads one fails.
	void spoilIndexes(uint32_t first, uint32_t end)
	{
		for (uint32_t p = first; p < end; p++)
			writeCacheTestFile(indexFile(p), "not a pack index");
	}

	fs::path cacheDir(const Store &store) const { return ChunkMapCache::dirFor(stateDir(), store.storeId()); }

	std::vector<fs::path> runFiles(const fs::path &dir) const
	{
		std::vector<fs::path> runs;
		for (const auto &e : fs::directory_iterator(dir))
			if (e.path().filename().string().rfind("run-", 0) == 0)
				runs.push_back(e.path());
		return runs;
	}

	// Fresh store with packs [0, 20) learnt and saved by one open.
	fs::path setUpSaved()
	{
		auto store = initAndOpen();
		EXPECT_TRUE(store);
		if (!store)
			return {};
		for (uint32_t p = 0; p < 20; p++)
			writeIndex(*store, p);
		auto cached = openCached();
		EXPECT_TRUE(cached);
		return cached ? cacheDir(*cached) : fs::path();
	}
};

TEST_F(ChunkMapCacheTest, ALaterOpenLearnsOnlyThePacksAddedSince)
{
	fs::path dir = setUpSaved();
	ASSERT_FALSE(dir.empty());
	EXPECT_TRUE(fs::exists(dir / "map"));
	EXPECT_EQ(fs::status(dir).permissions() & fs::perms::all, fs::perms::owner_all);
	for (const fs::path &run : runFiles(dir))
		EXPECT_EQ(fs::status(run).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
	// The saved packs' indexes unreadable: an open that read them fails.
	spoilIndexes(0, 20);
	{
		auto store = openCached();
		ASSERT_TRUE(store);
		for (uint32_t p = 20; p < 25; p++)
			writeIndex(*store, p);
		ASSERT_TRUE(store->refresh());
		expectFound(*store, 0, 25, {30});
	}
	// What that one learnt was saved when it closed.
	spoilIndexes(20, 25);
	auto store = openCached();
	ASSERT_TRUE(store);
	expectFound(*store, 0, 25, {30});
}

TEST_F(ChunkMapCacheTest, ThePacksGcRemovedAreForgottenAndStayForgotten)
{
	fs::path dir = setUpSaved();
	ASSERT_FALSE(dir.empty());
	fs::remove(indexFile(3));
	fs::remove(indexFile(11));
	{
		auto store = openCached();
		ASSERT_TRUE(store);
		expectFound(*store, 0, 3, {3, 11});
		expectFound(*store, 12, 20);
	}
	auto store = openCached();
	ASSERT_TRUE(store);
	expectFound(*store, 4, 11, {3, 11});
}

TEST_F(ChunkMapCacheTest, ADamagedCacheIsLearntAgainAndAnswersRight)
{
	// Each damage, to a fresh copy of one saved cache.
	fs::path dir = setUpSaved();
	ASSERT_FALSE(dir.empty());
	fs::path pristine = root_ / "pristine";
	fs::copy(dir, pristine);
	auto runs = runFiles(dir);
	ASSERT_FALSE(runs.empty());
	fs::path run = dir / runs.front().filename();
	auto flip = [](const fs::path &file, uint64_t at) {
		std::string bytes = virtsnap::test::readFile(file);
		ASSERT_LT(at, bytes.size());
		bytes[at] ^= 0x01;
		writeCacheTestFile(file, bytes);
	};
	std::vector<std::pair<std::string, std::function<void()>>> damages = {
		{"a run's offset changed", [&] { flip(run, 40); }},
		{"a run cut short", [&] { fs::resize_file(run, fs::file_size(run) - 48); }},
		{"a run missing", [&] { fs::remove(run); }},
		{"the map changed", [&] { flip(dir / "map", 30); }},
		{"the map cut short", [&] { fs::resize_file(dir / "map", fs::file_size(dir / "map") / 2); }},
		{"the map empty", [&] { fs::resize_file(dir / "map", 0); }},
	};
	for (auto &[what, damage] : damages) {
		SCOPED_TRACE(what);
		fs::remove_all(dir);
		fs::copy(pristine, dir);
		damage();
		auto store = openCached();
		ASSERT_TRUE(store);
		expectFound(*store, 0, 20, {20});
	}
}

TEST_F(ChunkMapCacheTest, AnotherStoresCacheIsNotUsed)
{
	fs::path dir = setUpSaved();
	ASSERT_FALSE(dir.empty());
	// A second store with the same state directory and the first one's
	// cache where its own would be; its one pack has the id of the
	// first's pack 0 (ids are random: only a test makes them meet) and
	// other chunks.
	fs::path other = root_ / "other";
	auto made = initAndOpenAt(other, keyFile());
	ASSERT_TRUE(made);
	writeIndex(*made, 0, other, 40);
	fs::path otherDir = ChunkMapCache::dirFor(stateDir(), made->storeId());
	fs::create_directories(otherDir.parent_path());
	fs::copy(dir, otherDir);
	StoreOptions options;
	options.stateDir = stateDir();
	auto store = Store::open(other, keyFile(), options);
	ASSERT_TRUE(store) << describe(store);
	for (uint32_t i = 0; i < kCachePerPack; i++) {
		ASSERT_FALSE((*store)->contains(cachedChunkId(0, i))) << i;
		ASSERT_TRUE((*store)->contains(cachedChunkId(40, i))) << i;
	}
}

TEST_F(ChunkMapCacheTest, TwoSaversLeaveOneWholeCache)
{
	fs::path dir = setUpSaved();
	ASSERT_FALSE(dir.empty());
	auto a = openCached();
	auto b = openCached();
	ASSERT_TRUE(a && b);
	for (uint32_t p = 20; p < 23; p++)
		writeIndex(*a, p);
	ASSERT_TRUE(a->refresh());
	fs::remove(indexFile(5));
	ASSERT_TRUE(b->refresh());
	// b learnt 20-22 and forgot 5 too; each saves, a first, then b.
	a.reset();
	b.reset();
	spoilIndexes(0, 5);
	auto store = openCached();
	ASSERT_TRUE(store);
	expectFound(*store, 0, 5, {5});
	expectFound(*store, 6, 23);
	// Only the runs the last save named are left.
	EXPECT_LE(runFiles(dir).size(), 3u);
}

} // namespace
} // namespace virtsnap::store::test
