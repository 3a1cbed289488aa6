// Shared by the store tests: a fresh directory per test, deterministic test
// data, and small helpers to look at and damage the files of a store.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/ids.h"
#include "crypto/crypto.h"
#include "crypto/resource_ids.h"
#include "store/chunk_writer.h"
#include "store/local_backend.h"
#include "store/manifest.h"
#include "store/snapshot_index.h"
#include "store/store.h"
#include "tests/support/core_test_util.h"
#include "tests/support/test_env.h"

namespace virtsnap::store::test {

namespace fs = std::filesystem;

// The chunk size and the disk length, in chunks, of the small stores most
// tests make.
inline constexpr uint32_t kChunk = 4096;
inline constexpr size_t kSlots = 16;

using virtsnap::test::asBytes;
using virtsnap::test::codeOf;
using virtsnap::test::describe;
using virtsnap::test::fileMode;
using virtsnap::test::filesContaining;
using virtsnap::test::randomData;
using virtsnap::test::randomKey;

// Text that zstd shrinks a lot; `seed` makes distinct contents.
inline Bytes compressibleData(size_t n, uint64_t seed)
{
	std::string line = "virtsnap compressible line " + std::to_string(seed) + "\n";
	Bytes out(n);
	for (size_t i = 0; i < n; i++)
		out[i] = uint8_t(line[i % line.size()]);
	return out;
}

// Regular files under `dir` whose name ends with `suffix`.
inline std::vector<fs::path> filesEndingWith(const fs::path &dir, const std::string &suffix)
{
	std::vector<fs::path> out;
	std::error_code ec;
	for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec)) {
		std::string name = it->path().filename().string();
		if (it->is_regular_file() && name.size() >= suffix.size() &&
		    name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
			out.push_back(it->path());
	}
	std::sort(out.begin(), out.end());
	return out;
}

// Every entry under `dir` with its type, mode and (for files) content: two
// equal snapshots mean nothing was created, removed or changed.
inline std::map<std::string, std::string> treeSnapshot(const fs::path &dir)
{
	std::map<std::string, std::string> out;
	std::error_code ec;
	if (!fs::exists(dir, ec))
		return out;
	for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec)) {
		// Leases come and go with whoever works on the store (lease.h):
		// they are not what it holds.
		if (it->path() == dir / "locks") {
			it.disable_recursion_pending();
			continue;
		}
		struct stat st;
		if (::lstat(it->path().c_str(), &st) != 0)
			continue;
		std::string desc = std::to_string(st.st_mode);
		if (S_ISREG(st.st_mode)) {
			auto bytes = readFile(it->path());
			desc += ":" + (bytes ? toHex(*bytes) : std::string("unreadable"));
		}
		out[fs::relative(it->path(), dir).string()] = desc;
	}
	return out;
}

// XORs one byte of a file in place (the inode stays, so descriptors a Store
// already holds see the damage too).
inline void flipByte(const fs::path &path, uint64_t offset, uint8_t mask = 0x01)
{
	int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0) << path;
	uint8_t b = 0;
	ASSERT_EQ(::pread(fd, &b, 1, off_t(offset)), 1) << path << " @" << offset;
	b ^= mask;
	ASSERT_EQ(::pwrite(fd, &b, 1, off_t(offset)), 1) << path << " @" << offset;
	::close(fd);
}

// The chunks of `parts` one after the other: a disk.
inline Bytes concat(const std::vector<std::vector<Bytes>> &parts)
{
	Bytes out;
	for (const auto &part : parts)
		for (const Bytes &b : part)
			out.insert(out.end(), b.begin(), b.end());
	return out;
}

// A manifest for snapshot `id` of disk vda of the instance "name:vm".
inline Manifest manifestFor(const std::string &id, const std::string &startTime)
{
	Manifest m;
	m.snapshotId = id;
	m.volumeId = volumeIdFor("name:vm", "vda");
	m.startTime = startTime;
	return m;
}

// The master key as the hex that a key file holds, to check that no error
// message ever carries it.
inline std::string keyHex(const crypto::SecretKey &key)
{
	return toHex(key.bytes());
}

// Where a local store keeps a pack and its index, for tests that damage
// them by hand.
inline fs::path packPath(const fs::path &storeDir, const PackId &id)
{
	return storeDir / packName(id);
}

inline fs::path packIndexPath(const fs::path &storeDir, const PackId &id)
{
	return storeDir / packIndexName(id);
}

// A fresh directory per test, removed with everything in it.
class StoreDirTest : public ::testing::Test
{
protected:
	fs::path storeDir() const { return root_ / "store"; }
	fs::path keyFile() const { return root_ / "keys" / "master.key"; }

	// Initialises storeDir() with keyFile() (created) and opens it.
	std::unique_ptr<Store> initAndOpen(uint32_t chunkSize = Store::kDefaultChunkSize)
	{
		return initAndOpenAt(storeDir(), keyFile(), chunkSize);
	}

	std::unique_ptr<Store> initAndOpenAt(const fs::path &dir, const fs::path &key,
					     uint32_t chunkSize = Store::kDefaultChunkSize)
	{
		bool created = false;
		auto r = Store::init(dir, key, chunkSize, &created);
		EXPECT_TRUE(r) << describe(r);
		if (!r)
			return nullptr;
		return openOrNull(dir, key);
	}

	std::unique_ptr<Store> openOrNull(const fs::path &dir, const fs::path &key)
	{
		auto s = Store::open(dir, key);
		EXPECT_TRUE(s) << describe(s);
		return s ? std::move(*s) : nullptr;
	}

	size_t countPacks() const { return filesEndingWith(storeDir() / "packs", ".pack").size(); }
	size_t countIndexes() const { return filesEndingWith(storeDir() / "packs", ".idx").size(); }
	size_t countTemps() const { return filesContaining(storeDir(), ".tmp-").size(); }

	virtsnap::test::TempDir tmp_{"vs-store-test"};
	fs::path root_{tmp_.path()};
};

// A StoreDirTest with its store initialised and open (store_, chunks of
// `chunkSize`) and a codec of it.
class OpenStoreTest : public StoreDirTest
{
protected:
	explicit OpenStoreTest(uint32_t chunkSize = Store::kDefaultChunkSize) : chunkSize_(chunkSize) {}

	void SetUp() override
	{
		store_ = initAndOpen(chunkSize_);
		ASSERT_TRUE(store_);
		codec_ = store_->newCodec();
	}

	// `n` distinct chunks' worth of bytes from `seed` on: random, or
	// compressible when `seed` is odd.
	std::vector<Bytes> chunks(size_t n, uint64_t seed) const
	{
		std::vector<Bytes> out;
		for (size_t i = 0; i < n; i++) {
			uint64_t s = seed + i;
			out.push_back(seed % 2 ? compressibleData(chunkSize_, s) : randomData(chunkSize_, s));
		}
		return out;
	}

	// Puts every slot of `disk` that is not all zeros through `writer`
	// into `index`, as a capture does.
	void putSlots(ChunkWriter &writer, const Bytes &disk, SnapshotIndex &index)
	{
		for (uint64_t s = 0; s < index.slots(); s++) {
			std::span<const uint8_t> slot(disk.data() + s * chunkSize_, index.slotLength(s));
			if (isAllZero(slot))
				continue;
			auto c = writer.put(*codec_, slot, ChunkType::Data);
			ASSERT_TRUE(c) << describe(c);
			index.set(s, *c);
		}
	}

	// Saves `index` through `writer`, commits it, and stores its manifest
	// as snapshot `id` started now.
	void saveSnapshot(const std::string &id, const SnapshotIndex &index, ChunkWriter &writer)
	{
		Manifest m = manifestFor(id, isoTimeNow());
		auto saved = index.save(writer, *codec_, m);
		ASSERT_TRUE(saved) << describe(saved);
		auto committed = writer.commit();
		ASSERT_TRUE(committed) << describe(committed);
		auto put = store_->putManifest(m);
		ASSERT_TRUE(put) << describe(put);
	}

	std::unique_ptr<Store> store_;
	std::unique_ptr<ChunkCodec> codec_;

private:
	uint32_t chunkSize_;
};

} // namespace virtsnap::store::test
