// The chunk map (chunk_map.h): what it finds against a plain std::map of the
// same entries, and the memory it needs: a store whose pack indexes name a
// million chunks (the indexes only, no data behind them) opens and answers
// lookups within a bound the old all-in-memory map was far above.
#include <sys/resource.h>
#include <sys/wait.h>

#include <map>

#include "store/chunk_map.h"
#include "store/key_domain.h"
#include "store/pack.h"
#include "store_test_util.h"
#include "tests/support/synthetic_chunk_ids.h"

namespace virtsnap::store::test {
namespace {

// A uniform id, a function of `n` alone: the tests recompute ids rather
// than keep a million of them.
ChunkId syntheticId(uint64_t n)
{
	return virtsnap::test::syntheticChunkId(n);
}

// Where pack `pack`'s i-th synthetic entry says its blob is.
PackEntry syntheticEntry(uint64_t n, uint32_t i)
{
	return PackEntry{syntheticId(n), ChunkType::Data, 0, kPackHeaderSize + uint64_t(i) * 1000, 1000, 4096};
}

class ChunkMapTest : public ::testing::Test
{
protected:
	virtsnap::test::TempDir tmp_{"vs-chunk-map"};
};

TEST_F(ChunkMapTest, FindsWhatAStdMapFindsAcrossRunsAndForgottenPacks)
{
	// A small table, so that 20 packs of 500 make runs and merges.
	ChunkMap map({.dir = tmp_.path(), .tableEntries = 700});
	std::multimap<ChunkId, std::pair<uint32_t, PackEntry>> reference;
	for (uint32_t pack = 0; pack < 20; pack++) {
		std::vector<PackEntry> entries;
		for (uint32_t i = 0; i < 500; i++) {
			// Every fifth chunk of an odd pack is stored in the pack
			// before too.
			uint64_t n = (pack % 2 && i % 5 == 0) ? uint64_t(pack - 1) * 500 + i : uint64_t(pack) * 500 + i;
			entries.push_back(syntheticEntry(n, i));
			reference.insert({entries.back().id, {pack, entries.back()}});
		}
		ASSERT_TRUE(map.add(pack, entries));
	}
	EXPECT_GT(map.runs(), 1u);
	EXPECT_LT(map.runs(), 6u);
	// Packs 2 (whose every fifth chunk pack 3 holds too) and 7 are gone.
	map.forget({2, 7});
	auto gone = [](uint32_t pack) { return pack == 2 || pack == 7; };
	for (uint64_t n = 0; n < 20 * 500 + 2000; n++) {
		ChunkId id = syntheticId(n);
		auto found = map.find(id);
		ASSERT_TRUE(found) << describe(found);
		// The copy in the lowest-numbered pack that is not gone.
		auto [begin, end] = reference.equal_range(id);
		const std::pair<uint32_t, PackEntry> *expected = nullptr;
		for (auto it = begin; it != end; ++it)
			if (!gone(it->second.first) && (!expected || it->second.first < expected->first))
				expected = &it->second;
		ASSERT_EQ(found->has_value(), expected != nullptr) << "chunk " << n;
		if (!expected)
			continue;
		EXPECT_EQ((*found)->pack, expected->first) << "chunk " << n;
		EXPECT_EQ((*found)->offset, expected->second.offset) << "chunk " << n;
		EXPECT_EQ((*found)->length, expected->second.length) << "chunk " << n;
	}
	// Compacted into one run, it drops what the forgotten packs held, and
	// finds the same.
	std::vector<PackEntry> more;
	for (uint32_t i = 0; i < 10000; i++)
		more.push_back(syntheticEntry(100000 + i, i));
	ASSERT_TRUE(map.add(20, more));
	EXPECT_GT(map.runs(), 1u);
	ASSERT_TRUE(map.compact());
	EXPECT_EQ(map.runs(), 1u);
	EXPECT_EQ(map.entries(), reference.size() + more.size() - 2 * 500);
	// In packs 2 and 3; in pack 2 alone; in pack 20.
	EXPECT_TRUE(map.find(syntheticId(2 * 500 + 5))->has_value());
	EXPECT_FALSE(map.find(syntheticId(2 * 500 + 1))->has_value());
	EXPECT_TRUE(map.find(syntheticId(100000 + 9999))->has_value());
}

TEST_F(ChunkMapTest, RunFilesAreUnlinked)
{
	ChunkMap map({.dir = tmp_.path(), .tableEntries = 10});
	std::vector<PackEntry> entries;
	for (uint32_t i = 0; i < 100; i++)
		entries.push_back(syntheticEntry(i, i));
	ASSERT_TRUE(map.add(0, entries));
	EXPECT_GE(map.runs(), 1u);
	EXPECT_TRUE(fs::is_empty(tmp_.path()));
}

TEST_F(ChunkMapTest, AnUnusableDirectoryIsAnErrorNamingIt)
{
	ChunkMap map({.dir = tmp_.file("absent"), .tableEntries = 10});
	std::vector<PackEntry> entries;
	for (uint32_t i = 0; i < 100; i++)
		entries.push_back(syntheticEntry(i, i));
	auto added = map.add(0, entries);
	ASSERT_FALSE(added);
	EXPECT_NE(added.error().message.find(tmp_.file("absent")), std::string::npos) << describe(added);
}

// 1 M chunks in 1000 packs: the old map (every id in a hash table, about
// 80 bytes each) grew by some 80 MiB here.
constexpr uint32_t kPacks = 1000;
constexpr uint32_t kPerPack = 1000;
constexpr long kBoundKiB = 32 * 1024;

class ChunkMapMemoryTest : public StoreDirTest
{
protected:
	void SetUp() override
	{
		StoreDirTest::SetUp();
		auto store = initAndOpen();
		ASSERT_TRUE(store);
		const KeyDomain &domain = store->domain();
		for (uint32_t p = 0; p < kPacks; p++) {
			PackIndex index;
			uint64_t seed = p;
			for (size_t i = 0; i < index.packId.size(); i += 8) {
				uint64_t w = virtsnap::test::splitmix64(seed);
				std::memcpy(index.packId.data() + i, &w, 8);
			}
			for (uint32_t i = 0; i < kPerPack; i++)
				index.entries.push_back(syntheticEntry(uint64_t(p) * kPerPack + i, i));
			auto sealed = sealObject(ObjectType::PackIndex, domain.id, domain.encKey, toHex(index.packId),
						 serializePackIndex(index));
			ASSERT_TRUE(sealed);
			// Straight into the directory: a backend put fsyncs, which
			// took 25 s for 1000 objects.
			fs::path file = storeDir() / packIndexName(index.packId);
			fs::create_directories(file.parent_path());
			int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			ASSERT_GE(fd, 0) << file;
			ASSERT_TRUE(writeAll(fd, *sealed));
			::close(fd);
		}
	}

	// Resident KiB now, from /proc (ru_maxrss has only the peak).
	static long residentKiB()
	{
		std::string status = virtsnap::test::readFile("/proc/self/status");
		size_t at = status.find("VmRSS:");
		return at == std::string::npos ? -1 : std::atol(status.c_str() + at + 6);
	}

	// What opening the store and a lookup pass add to the peak, measured
	// in a child of its own, or -1 if the lookups went wrong.
	long peakGrowthKiB()
	{
		int fds[2];
		EXPECT_EQ(::pipe(fds), 0);
		pid_t child = ::fork();
		if (child == 0) {
			::close(fds[0]);
			long start = residentKiB();
			long growth = lookupPass() ? -1 : 0;
			struct rusage usage{};
			::getrusage(RUSAGE_SELF, &usage);
			if (growth == 0)
				growth = usage.ru_maxrss - start;
			(void)!::write(fds[1], &growth, sizeof(growth));
			::_exit(0);
		}
		::close(fds[1]);
		long growth = -2;
		EXPECT_EQ(::read(fds[0], &growth, sizeof(growth)), ssize_t(sizeof(growth)));
		::close(fds[0]);
		int status = 0;
		::waitpid(child, &status, 0);
		return growth;
	}

	// Opens the store (which learns every pack index) and asks for every
	// tenth chunk and as many that are not there; non-zero when an answer
	// is wrong.
	int lookupPass()
	{
		StoreOptions options;
		options.stateDir = stateDir_;
		auto opened = Store::open(storeDir(), keyFile(), options);
		if (!opened)
			return 1;
		auto &store = *opened;
		for (uint64_t n = 0; n < uint64_t(kPacks) * kPerPack; n += 10) {
			auto where = store->locate(syntheticId(n));
			if (!where || where->offset != kPackHeaderSize + (n % kPerPack) * 1000 || where->length != 1000)
				return 2;
			if (store->contains(syntheticId(n + uint64_t(kPacks) * kPerPack)))
				return 3;
		}
		return 0;
	}

	// Empty: the map is learnt at each open, as without a state directory.
	fs::path stateDir_;
};

// AddressSanitizer's allocator and shadow memory multiply RSS (221 MiB
// here for what takes 24 MiB): under it the pass runs and its answers are
// checked, and the bound is the other builds'.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssMeaningful = false;
#elif defined(__has_feature)
constexpr bool kRssMeaningful = !__has_feature(address_sanitizer);
#else
constexpr bool kRssMeaningful = true;
#endif

TEST_F(ChunkMapMemoryTest, AMillionChunkStoreOpensAndLooksUpWithinABound)
{
	long growth = peakGrowthKiB();
	ASSERT_GE(growth, 0) << (growth == -1 ? "a lookup went wrong" : "the child failed");
	RecordProperty("peak_growth_kib", std::to_string(growth));
	std::printf("peak RSS growth: %ld KiB (bound %ld KiB)\n", growth, kBoundKiB);
	if (kRssMeaningful) {
		EXPECT_LT(growth, kBoundKiB);
	}
}

// The map saved in the state directory by one open and loaded by the
// next: the loaded runs' filters and keys are within the same bound.
TEST_F(ChunkMapMemoryTest, AMillionChunkMapLoadedFromTheStateDirectoryStaysWithinTheBound)
{
	stateDir_ = storeDir() / "state";
	long learnt = peakGrowthKiB();
	ASSERT_GE(learnt, 0) << (learnt == -1 ? "a lookup went wrong" : "the child failed");
	ASSERT_TRUE(fs::exists(stateDir_ / "chunk-map"));
	long loaded = peakGrowthKiB();
	ASSERT_GE(loaded, 0) << (loaded == -1 ? "a lookup went wrong" : "the child failed");
	std::printf("peak RSS growth: %ld KiB learnt, %ld KiB loaded (bound %ld KiB)\n", learnt, loaded, kBoundKiB);
	if (kRssMeaningful) {
		EXPECT_LT(learnt, kBoundKiB);
		EXPECT_LT(loaded, kBoundKiB);
	}
}

} // namespace
} // namespace virtsnap::store::test
