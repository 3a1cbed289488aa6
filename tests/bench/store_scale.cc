// store-scale: a store that names many chunks, without the data behind them,
// for the scale benchmark (scale-bench): what the chunk map costs at 50 M
// chunks is a matter of pack indexes alone.
//
//   store-scale populate STORE_DIR KEY_FILE CHUNKS
//       adds sealed pack indexes of 1000 made-up chunks each (uniform ids,
//       a function of their number) to an initialised store in a
//       directory. No pack is behind them: never read those chunks, and
//       never run gc or verify on such a store.
//   store-scale lookup STORE_DIR KEY_FILE CHUNKS [STATE_DIR]
//       opens the store and looks up every hundredth made-up chunk and as
//       many absent ones; prints one JSON line (seconds to open, seconds
//       to look up, whether every answer was right). With STATE_DIR, the
//       chunk map is loaded from and saved to it (chunk_map_cache.h), as
//       virtsnap does with its state directory.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/file_util.h"
#include "store/key_domain.h"
#include "store/pack.h"
#include "store/store.h"
#include "tests/support/synthetic_chunk_ids.h"

namespace {

using namespace virtsnap;
using namespace virtsnap::store;

constexpr uint32_t kPerPack = 1000;

using virtsnap::test::splitmix64;

// Salted apart from chunk_map_test.cc's, so a real chunk never meets one.
ChunkId madeUpId(uint64_t n)
{
	return virtsnap::test::syntheticChunkId(n, 1ull << 62);
}

int populate(const std::string &dir, const std::string &key, uint64_t chunks)
{
	auto store = Store::open(dir, key);
	if (!store) {
		std::fprintf(stderr, "store-scale: %s\n", store.error().message.c_str());
		return 1;
	}
	const KeyDomain &domain = (*store)->domain();
	for (uint64_t first = 0, p = 0; first < chunks; first += kPerPack, p++) {
		PackIndex index;
		uint64_t seed = p + (1ull << 40);
		for (size_t i = 0; i < index.packId.size(); i += 8) {
			uint64_t w = splitmix64(seed);
			std::memcpy(index.packId.data() + i, &w, 8);
		}
		for (uint64_t n = first; n < std::min(chunks, first + kPerPack); n++)
			index.entries.push_back(PackEntry{madeUpId(n), ChunkType::Data, 0,
							  kPackHeaderSize + (n - first) * 1000, 1000, 65536});
		auto sealed = sealObject(ObjectType::PackIndex, domain.id, domain.encKey, toHex(index.packId),
					 serializePackIndex(index));
		// Plain writes: the store's own puts fsync each object.
		std::filesystem::path file = std::filesystem::path(dir) / packIndexName(index.packId);
		std::filesystem::create_directories(file.parent_path());
		int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (!sealed || fd < 0 || !writeAll(fd, *sealed)) {
			std::fprintf(stderr, "store-scale: cannot write %s\n", file.c_str());
			return 1;
		}
		::close(fd);
	}
	return 0;
}

int lookup(const std::string &dir, const std::string &key, uint64_t chunks, const std::string &stateDir)
{
	auto t0 = std::chrono::steady_clock::now();
	StoreOptions options;
	options.stateDir = stateDir;
	auto store = Store::open(dir, key, options);
	if (!store) {
		std::fprintf(stderr, "store-scale: %s\n", store.error().message.c_str());
		return 1;
	}
	auto t1 = std::chrono::steady_clock::now();
	bool right = true;
	uint64_t asked = 0;
	for (uint64_t n = 0; n < chunks; n += 100, asked += 2) {
		auto where = (*store)->locate(madeUpId(n));
		right &= where && where->offset == kPackHeaderSize + (n % kPerPack) * 1000;
		right &= !(*store)->contains(madeUpId(n + chunks));
	}
	auto t2 = std::chrono::steady_clock::now();
	auto s = [](auto d) { return std::chrono::duration<double>(d).count(); };
	std::printf("{\"open_s\": %.3f, \"lookup_s\": %.3f, \"lookups\": %llu, \"right\": %s}\n", s(t1 - t0),
		    s(t2 - t1), (unsigned long long)asked, right ? "true" : "false");
	return right ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 5 && !(argc == 6 && std::string(argv[1]) == "lookup")) {
		std::fprintf(stderr, "usage: store-scale populate|lookup STORE_DIR KEY_FILE CHUNKS [STATE_DIR]\n");
		return 2;
	}
	std::string what = argv[1];
	uint64_t chunks = std::stoull(argv[4]);
	if (what == "populate")
		return populate(argv[2], argv[3], chunks);
	if (what == "lookup")
		return lookup(argv[2], argv[3], chunks, argc == 6 ? argv[5] : "");
	std::fprintf(stderr, "store-scale: unknown command %s\n", what.c_str());
	return 2;
}
