// Snapshots the engine tests write through the EBS block API (block
// writes), and the raw references they compare restores against.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/unique_fd.h"
#include "crypto/crypto.h"
#include "engine/block_writes.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine::test {

// Starts `request`, puts `blocks` (512 KiB each, by index) with their
// checksums and completes it: the snapshot's id, or "" with a failure of
// the current test.
inline std::string writeBlocks(BlockWrites &writes, store::Store &store, const StartRequest &request,
			       const std::map<uint64_t, Bytes> &blocks, TimePoint now)
{
	using store::test::describe;
	auto w = writes.start(store, request, now);
	EXPECT_TRUE(w) << describe(w);
	if (!w)
		return "";
	std::vector<BlockPut> puts;
	for (const auto &[b, data] : blocks)
		puts.push_back({b, data, crypto::base64(crypto::sha256(data))});
	auto put = writes.putBlocks(store, w->snapshotId, puts, now);
	EXPECT_TRUE(put) << describe(put);
	auto done = writes.complete(store, w->snapshotId, blocks.size(), "", now);
	EXPECT_TRUE(done && done->state == SnapshotState::Completed) << describe(done);
	return w->snapshotId;
}

// A sparse raw file of `size` bytes holding `blocks`, written by the test
// itself (a copied file would not stay sparse).
inline void writeReference(const std::filesystem::path &path, uint64_t size, const std::map<uint64_t, Bytes> &blocks)
{
	UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	ASSERT_TRUE(fd.isValid()) << path;
	ASSERT_EQ(::ftruncate(fd.get(), off_t(size)), 0);
	for (const auto &[b, data] : blocks)
		ASSERT_EQ(::pwrite(fd.get(), data.data(), data.size(), off_t(b * kBlockSize)), ssize_t(data.size()));
}

} // namespace virtsnap::engine::test
