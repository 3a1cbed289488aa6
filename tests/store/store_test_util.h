// Shared by the store tests: a fresh directory per test, or a fresh store on
// each backend (backends.h), deterministic test data, and small helpers to
// look at and damage what a store holds.
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
#include "tests/support/backends.h"
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

// Every object of the store on `backend` with its content, the leases left
// out as treeSnapshot leaves them: two equal snapshots mean nothing was
// created, removed or changed. A directory shows more than the backend's
// objects (modes, directories, temporary files, whether it exists at all),
// and none of that may change either.
inline std::map<std::string, std::string> storeSnapshot(Backend &backend)
{
	std::map<std::string, std::string> out;
	if (backend.local()) {
		fs::path dir = backend.describe();
		out = treeSnapshot(dir);
		if (fs::exists(dir))
			out["."] = "the directory";
		return out;
	}
	std::vector<std::string> names;
	auto listed = backend.list("", [&](const ObjectInfo &info) {
		if (info.name.rfind("locks/", 0) != 0)
			names.push_back(info.name);
	});
	EXPECT_TRUE(listed) << describe(listed);
	for (const std::string &name : names) {
		auto bytes = backend.get(name);
		out[name] = bytes ? toHex(*bytes) : "unreadable: " + bytes.error().toString();
	}
	return out;
}

// The names of the objects under `prefix` that end with `suffix`, sorted.
inline std::vector<std::string> objectsEndingWith(Backend &backend, const std::string &prefix,
						  const std::string &suffix)
{
	std::vector<std::string> out;
	auto listed = backend.list(prefix, [&](const ObjectInfo &info) {
		if (info.name.ends_with(suffix))
			out.push_back(info.name);
	});
	EXPECT_TRUE(listed) << describe(listed);
	std::sort(out.begin(), out.end());
	return out;
}

// "packs/ab/<id>.idx" for "packs/ab/<id>.pack".
inline std::string indexOfPack(const std::string &pack)
{
	return pack.substr(0, pack.size() - std::string(".pack").size()) + ".idx";
}

inline bool hasObject(Backend &backend, const std::string &name)
{
	auto info = backend.stat(name);
	EXPECT_TRUE(info || info.error().code == errc::kObjectNotFound) << describe(info);
	return bool(info);
}

inline uint64_t objectSize(Backend &backend, const std::string &name)
{
	auto info = backend.stat(name);
	EXPECT_TRUE(info) << describe(info);
	return info ? info->size : 0;
}

// Removes an object that was there, as fs::remove() does when it returns
// true.
inline ::testing::AssertionResult removedObject(Backend &backend, const std::string &name)
{
	if (!hasObject(backend, name))
		return ::testing::AssertionFailure() << name << " is not there to remove";
	auto removed = backend.remove(name);
	if (!removed)
		return ::testing::AssertionFailure() << removed.error().toString();
	return ::testing::AssertionSuccess();
}

// Damage done as a disk or a careless hand would do it: XORs the bytes at
// `offsets` of an object with `mask`. A directory's file is changed in
// place: a Store that holds it open sees the damage too. An object store has
// no partial writes: the object is read and put whole, once for them all.
inline void flipObjectBytes(Backend &backend, const std::string &name, const std::vector<uint64_t> &offsets,
			    uint8_t mask = 0x01)
{
	if (backend.local()) {
		for (uint64_t offset : offsets)
			ASSERT_NO_FATAL_FAILURE(flipByte(fs::path(backend.describe()) / name, offset, mask));
		return;
	}
	auto bytes = backend.get(name);
	ASSERT_TRUE(bytes) << describe(bytes);
	for (uint64_t offset : offsets) {
		ASSERT_LT(offset, bytes->size()) << name;
		(*bytes)[offset] ^= mask;
	}
	auto put = backend.put(name, *bytes);
	ASSERT_TRUE(put) << describe(put);
}

inline void flipObjectByte(Backend &backend, const std::string &name, uint64_t offset, uint8_t mask = 0x01)
{
	flipObjectBytes(backend, name, {offset}, mask);
}

inline void truncateObject(Backend &backend, const std::string &name, uint64_t size)
{
	if (backend.local())
		return fs::resize_file(fs::path(backend.describe()) / name, size);
	auto bytes = backend.get(name);
	ASSERT_TRUE(bytes) << describe(bytes);
	ASSERT_LE(size, bytes->size()) << name;
	bytes->resize(size);
	auto put = backend.put(name, *bytes);
	ASSERT_TRUE(put) << describe(put);
}

inline void copyObject(Backend &backend, const std::string &from, const std::string &to)
{
	auto bytes = backend.get(from);
	ASSERT_TRUE(bytes) << describe(bytes);
	auto put = backend.put(to, *bytes);
	ASSERT_TRUE(put) << describe(put);
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

// A fresh store location per test on the backend the parameter names
// ("local", "rados", "s3": backends.h), and a key file in a fresh
// directory. Instantiate over virtsnap::test::backendNames().
class BackendStoreTest : public ::testing::TestWithParam<std::string>
{
protected:
	void SetUp() override { REQUIRE_BACKEND(GetParam(), backend_, url_); }

	bool local() const { return GetParam() == "local"; }
	fs::path keyFile() const { return root_ / "keys" / "master.key"; }

	// A connection of its own to the store, as another process or host
	// has one.
	virtual std::unique_ptr<Backend> connect()
	{
		auto b = openBackend(url_, virtsnap::test::backendNamed(GetParam())->settings);
		EXPECT_TRUE(b) << describe(b);
		return b ? std::move(*b) : nullptr;
	}

	// Initialises the store with keyFile() (created) and opens it.
	std::unique_ptr<Store> initAndOpen(uint32_t chunkSize = Store::kDefaultChunkSize)
	{
		bool created = false;
		auto r = Store::init(*backend_, keyFile(), chunkSize, &created);
		EXPECT_TRUE(r) << describe(r);
		return r ? openOrNull() : nullptr;
	}

	Result<std::unique_ptr<Store>> open(const fs::path &key, StoreOptions options = {})
	{
		auto b = connect();
		if (!b)
			return fail(errc::kStoreUnavailable, "no connection to " + url_);
		return Store::open(std::move(b), key, options);
	}

	std::unique_ptr<Store> openOrNull(StoreOptions options = {})
	{
		auto s = open(keyFile(), options);
		EXPECT_TRUE(s) << describe(s);
		return s ? std::move(*s) : nullptr;
	}

	size_t countPacks() { return objectsEndingWith(*backend_, "packs/", ".pack").size(); }
	size_t countIndexes() { return objectsEndingWith(*backend_, "packs/", ".idx").size(); }

	// The test's own connection: to look at and damage what the store
	// holds behind its back.
	std::unique_ptr<Backend> backend_;
	std::string url_;
	virtsnap::test::TempDir tmp_{"vs-store-test"};
	fs::path root_{tmp_.path()};
};

// A StoreDirTest or a BackendStoreTest with its store initialised and open
// (store_, chunks of `chunkSize`) and a codec of it.
template <class Base>
class WithOpenStore : public Base
{
protected:
	explicit WithOpenStore(uint32_t chunkSize = Store::kDefaultChunkSize) : chunkSize_(chunkSize) {}

	void SetUp() override
	{
		Base::SetUp();
		if (this->HasFatalFailure() || this->IsSkipped())
			return;
		store_ = this->initAndOpen(chunkSize_);
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

using OpenStoreTest = WithOpenStore<StoreDirTest>;
using OpenBackendStoreTest = WithOpenStore<BackendStoreTest>;

// The backend's name as the parameter's suffix: "GcTest.EmptyStore/rados".
inline std::string backendSuffix(const ::testing::TestParamInfo<std::string> &info)
{
	return info.param;
}

} // namespace virtsnap::store::test
