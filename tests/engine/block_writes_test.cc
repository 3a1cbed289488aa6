// The write side of the EBS direct APIs (engine/block_writes.h) on a store
// in a directory: blocks put and completed restore bit for bit through
// create-volume's own path, a parent's blocks show through, a wrong
// checksum stores nothing, a wrong count or aggregate ends in error, a
// snapshot past its timeout ends in error and gc reclaims its data, and bad
// input is refused in one line. What is expected is worked out from the
// bytes put, never from the index.
#include <fcntl.h>
#include <signal.h>

#include <map>

#include "core/unique_fd.h"
#include "engine/block_writes.h"
#include "engine/image_import.h"
#include "engine/restore.h"
#include "core/process.h"
#include "store/gc.h"
#include "tests/engine/child_processes.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine {
namespace {

using store::test::describe;
using store::test::randomData;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kGiB = 1ull << 30;
const TimePoint kNow = TimePoint(std::chrono::seconds(1'800'000'000));

std::string checksumOf(const Bytes &block)
{
	return crypto::base64(crypto::sha256(block));
}

class BlockWritesTest : public store::test::WithOpenStore<store::test::StoreDirTest>,
			public ::testing::WithParamInterface<uint32_t>
{
protected:
	BlockWritesTest() : WithOpenStore(GetParam()) {}

	uint32_t chunk() const { return GetParam(); }

	std::string start(const std::string &parent = "", uint64_t gib = 1)
	{
		StartRequest req;
		req.volumeSizeGiB = gib;
		req.parentSnapshotId = parent;
		req.description = "from outside";
		req.tags = {{"k", "v"}};
		auto w = writes_.start(*store_, req, kNow);
		EXPECT_TRUE(w) << describe(w);
		return w ? w->snapshotId : "";
	}

	// Puts `data` as block `b`, and expects it at b's offset of the volume.
	void put(const std::string &id, uint64_t b, const Bytes &data)
	{
		auto r = writes_.put(*store_, id, b, data, checksumOf(data), kNow);
		ASSERT_TRUE(r) << describe(r);
		expected_[b * kBlockSize] = data;
		sums_[b] = crypto::sha256(data);
	}

	// EBS's LINEAR aggregate, worked out here: SHA-256 over the raw
	// digests in block index order.
	std::string aggregate() const
	{
		Bytes all;
		for (const auto &[b, d] : sums_)
			all.insert(all.end(), d.begin(), d.end());
		return crypto::base64(crypto::sha256(all));
	}

	// Restores `id` as create-volume does and compares every byte with
	// expected_ (zeros elsewhere), a piece at a time.
	void expectRestoresExactly(const std::string &id, uint64_t size)
	{
		RestoreRequest req{id, root_ / (id + ".raw"), "raw", nullptr, ""};
		auto restored = createVolume(*store_, req);
		ASSERT_TRUE(restored) << describe(restored);
		ASSERT_EQ(fs::file_size(req.target), size);
		UniqueFd fd(::open(req.target.c_str(), O_RDONLY));
		constexpr uint64_t kPiece = 8 << 20;
		Bytes got(kPiece), want(kPiece);
		for (uint64_t at = 0; at < size; at += kPiece) {
			ASSERT_TRUE(preadAll(fd.get(), got, at));
			std::fill(want.begin(), want.end(), 0);
			for (const auto &[off, bytes] : expected_)
				for (uint64_t i = 0; i < bytes.size(); i++)
					if (off + i >= at && off + i < at + kPiece)
						want[off + i - at] = bytes[i];
			ASSERT_TRUE(got == want) << "the volume differs in [" << at << ", " << at + kPiece << ")";
		}
	}

	std::optional<SnapshotState> stateOf(const std::string &id)
	{
		auto w = writes_.find(id);
		EXPECT_TRUE(w) << describe(w);
		return w && *w ? std::optional((*w)->state) : std::nullopt;
	}

	BlockWrites writes_{root_ / "state"};
	std::map<uint64_t, Bytes> expected_; // volume offset -> bytes
	std::map<uint64_t, crypto::Digest> sums_;
};

TEST_P(BlockWritesTest, PutBlocksCompleteIntoASnapshotThatRestoresBitExact)
{
	std::string id = start();
	put(id, 0, randomData(kBlockSize, 1));
	put(id, 7, randomData(kBlockSize, 2));
	put(id, 2047, randomData(kBlockSize, 3)); // the last block of 1 GiB
	Bytes half(kBlockSize, 0); // a block with a zero half: its zero chunks are not stored
	std::copy_n(randomData(kBlockSize / 2, 4).begin(), kBlockSize / 2, half.begin());
	put(id, 100, half);
	put(id, 7, randomData(kBlockSize, 5)); // put again: the last put counts
	EXPECT_EQ(stateOf(id), SnapshotState::Pending);

	auto done = writes_.complete(*store_, id, 4, aggregate(), kNow);
	ASSERT_TRUE(done) << describe(done);
	ASSERT_EQ(done->state, SnapshotState::Completed) << done->stateMessage;
	EXPECT_EQ(done->manifest.volumeId, kDirectVolumeId);
	EXPECT_EQ(done->manifest.volumeSize, kGiB);
	auto m = store_->getManifest(id);
	ASSERT_TRUE(m) << describe(m);
	EXPECT_EQ(m->description, "from outside");
	// Its bookkeeping is gone: the manifest is the snapshot now.
	EXPECT_FALSE(stateOf(id));
	expectRestoresExactly(id, kGiB);
	// Completed means sealed.
	auto late = writes_.put(*store_, id, 1, randomData(kBlockSize, 6), checksumOf(randomData(kBlockSize, 6)), kNow);
	EXPECT_FALSE(late);
}

TEST_P(BlockWritesTest, TheParentsBlocksShowWhereNoneWasPut)
{
	// A parent whose disk ends mid-chunk (as a captured disk may), so that
	// the new, larger volume needs its last chunk padded.
	uint64_t parentSize = kGiB - 100 * kKiB;
	store::SnapshotIndex index(parentSize, chunk());
	auto writer = store_->newWriter();
	Bytes first = randomData(3 * kBlockSize, 10), last = randomData(index.slotLength(index.slots() - 1), 11);
	for (uint64_t s = 0; s < 3 * kBlockSize / chunk(); s++) {
		auto id = writer->put(*codec_, std::span(first).subspan(s * chunk(), chunk()), store::ChunkType::Data);
		ASSERT_TRUE(id) << describe(id);
		index.set(s, *id);
	}
	auto lastId = writer->put(*codec_, last, store::ChunkType::Data);
	ASSERT_TRUE(lastId) << describe(lastId);
	index.set(index.slots() - 1, *lastId);
	store::Manifest pm = store::test::manifestFor("snap-0123456789abcdef0", isoTimeNow());
	pm.volumeSize = parentSize;
	ASSERT_TRUE(index.save(*writer, *codec_, pm));
	ASSERT_TRUE(writer->commit());
	ASSERT_TRUE(store_->putManifest(pm));

	std::string id = start(pm.snapshotId);
	put(id, 1, randomData(kBlockSize, 12)); // replaces the parent's block 1
	expected_[0] = Bytes(first.begin(), first.begin() + kBlockSize);
	expected_[2 * kBlockSize] = Bytes(first.begin() + 2 * kBlockSize, first.end());
	expected_[(index.slots() - 1) * chunk()] = last;
	auto done = writes_.complete(*store_, id, 1, aggregate(), kNow);
	ASSERT_TRUE(done) << describe(done);
	ASSERT_EQ(done->state, SnapshotState::Completed) << done->stateMessage;
	EXPECT_EQ(done->manifest.parentSnapshotId, pm.snapshotId);
	expectRestoresExactly(id, kGiB);
}

// A child holds its parent's data: a child of an encrypted snapshot is
// encrypted under the same key (else it would restore in plaintext, and
// could be made public). The flag goes through the write's state file.
TEST_P(BlockWritesTest, AChildOfAnEncryptedSnapshotIsEncrypted)
{
	store::SnapshotIndex index(kGiB, chunk());
	auto writer = store_->newWriter();
	store::Manifest pm = store::test::manifestFor("snap-0123456789abcdef1", isoTimeNow());
	pm.volumeSize = kGiB;
	pm.encrypted = true;
	// A key of the store (a key domain): the child's chunks are sealed
	// under it as the parent's are.
	auto key = store_->createDomain();
	ASSERT_TRUE(key) << describe(key);
	pm.kmsKeyId = (*key)->idHex();
	store::ChunkCodec keyCodec(**key, store_->compression());
	ASSERT_TRUE(index.save(*writer, keyCodec, pm));
	ASSERT_TRUE(writer->commit());
	ASSERT_TRUE(store_->putManifest(pm));

	std::string id = start(pm.snapshotId);
	put(id, 0, randomData(kBlockSize, 13));
	auto done = writes_.complete(*store_, id, 1, aggregate(), kNow);
	ASSERT_TRUE(done) << describe(done);
	ASSERT_EQ(done->state, SnapshotState::Completed) << done->stateMessage;
	EXPECT_TRUE(done->manifest.encrypted);
	EXPECT_EQ(done->manifest.kmsKeyId, pm.kmsKeyId);
	auto stored = store_->getManifest(id);
	ASSERT_TRUE(stored) << describe(stored);
	EXPECT_TRUE(stored->encrypted);

	std::string plain = start();
	put(plain, 0, randomData(kBlockSize, 14));
	auto other = writes_.complete(*store_, plain, 1, aggregate(), kNow);
	ASSERT_TRUE(other) << describe(other);
	EXPECT_FALSE(other->manifest.encrypted) << "outside data without a parent is a plain volume's";
}

TEST_P(BlockWritesTest, AWrongChecksumStoresNothing)
{
	std::string id = start();
	Bytes data = randomData(kBlockSize, 1);
	auto r = writes_.put(*store_, id, 3, data, checksumOf(randomData(kBlockSize, 2)), kNow);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kInvalidParameterValue);
	EXPECT_NE(r.error().message.find("does not match"), std::string::npos) << r.error().message;
	EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
	// A batch with one bad block stores none of them.
	Bytes good = randomData(kBlockSize, 3);
	auto batch = writes_.putBlocks(*store_, id, {{1, good, checksumOf(good)}, {2, data, checksumOf(good)}}, kNow);
	ASSERT_FALSE(batch);
	EXPECT_EQ(batch.error().code, errc::kInvalidParameterValue);
	// Nothing was put: a count of 0 completes an empty snapshot.
	auto done = writes_.complete(*store_, id, 0, aggregate(), kNow);
	ASSERT_TRUE(done) << describe(done);
	EXPECT_EQ(done->state, SnapshotState::Completed) << done->stateMessage;
}

TEST_P(BlockWritesTest, AWrongCountEndsInError)
{
	std::string id = start();
	put(id, 1, randomData(kBlockSize, 1));
	put(id, 2, randomData(kBlockSize, 2));
	auto done = writes_.complete(*store_, id, 3, "", kNow);
	ASSERT_TRUE(done) << describe(done);
	EXPECT_EQ(done->state, SnapshotState::Error);
	EXPECT_NE(done->stateMessage.find("--changed-blocks-count 3"), std::string::npos) << done->stateMessage;
	EXPECT_EQ(stateOf(id), SnapshotState::Error);
	auto m = store_->getManifest(id);
	EXPECT_FALSE(m);
	// Listed as it failed, for a catalog rebuild.
	auto listed = writes_.list();
	ASSERT_TRUE(listed) << describe(listed);
	ASSERT_EQ(listed->size(), 1u);
	EXPECT_EQ(listed->front().snapshotId, id);
	EXPECT_EQ(listed->front().stateMessage, done->stateMessage);
	// An error is final: neither a put nor a second complete revives it.
	auto again = writes_.complete(*store_, id, 2, "", kNow);
	ASSERT_FALSE(again);
	EXPECT_EQ(again.error().code, errc::kIncorrectState);
}

TEST_P(BlockWritesTest, AWrongAggregateEndsInError)
{
	std::string id = start();
	put(id, 1, randomData(kBlockSize, 1));
	put(id, 2, randomData(kBlockSize, 2));
	// The aggregate of the base64 texts, not of the raw digests: wrong.
	std::string texts = checksumOf(expected_[kBlockSize]) + checksumOf(expected_[2 * kBlockSize]);
	std::string wrong = crypto::base64(crypto::sha256(std::span((const uint8_t *)texts.data(), texts.size())));
	auto done = writes_.complete(*store_, id, 2, wrong, kNow);
	ASSERT_TRUE(done) << describe(done);
	EXPECT_EQ(done->state, SnapshotState::Error);
	EXPECT_NE(done->stateMessage.find("LINEAR"), std::string::npos) << done->stateMessage;
	EXPECT_FALSE(store_->getManifest(id));
}

TEST_P(BlockWritesTest, ATimedOutSnapshotEndsInErrorAndGcReclaimsItsData)
{
	std::string id = start();
	put(id, 5, randomData(kBlockSize, 1));
	store::GcOptions gc;
	gc.grace = std::chrono::seconds(0);
	gc.pinned = [&] { return writes_.pinnedChunks(store_->chunkSize()); };
	// While pending, gc keeps its chunks, though no manifest names them.
	auto kept = store::collectGarbage(*store_, gc);
	ASSERT_TRUE(kept) << describe(kept);
	EXPECT_EQ(kept->chunksRemoved, 0u);
	EXPECT_EQ(kept->chunksPinned, kBlockSize / chunk());

	// 59 minutes after the last put: still pending; 60: timed out.
	auto expired = writes_.expire(kNow + std::chrono::minutes(59));
	ASSERT_TRUE(expired) << describe(expired);
	EXPECT_TRUE(expired->empty());
	expired = writes_.expire(kNow + std::chrono::minutes(60));
	ASSERT_TRUE(expired) << describe(expired);
	ASSERT_EQ(expired->size(), 1u);
	EXPECT_EQ(expired->front().snapshotId, id);
	EXPECT_EQ(stateOf(id), SnapshotState::Error);
	auto late = writes_.put(*store_, id, 6, randomData(kBlockSize, 2), checksumOf(randomData(kBlockSize, 2)), kNow);
	ASSERT_FALSE(late);
	EXPECT_EQ(late.error().code, errc::kIncorrectState);

	auto swept = store::collectGarbage(*store_, gc);
	ASSERT_TRUE(swept) << describe(swept);
	EXPECT_EQ(swept->chunksRemoved, kBlockSize / chunk());
	EXPECT_EQ(swept->chunksPinned, 0u);
}

TEST_P(BlockWritesTest, APutPastTheTimeoutEndsTheSnapshotInError)
{
	std::string id = start();
	Bytes data = randomData(kBlockSize, 1);
	auto r = writes_.put(*store_, id, 0, data, checksumOf(data), kNow + std::chrono::hours(2));
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kIncorrectState);
	EXPECT_NE(r.error().message.find("timeout of 60 minutes"), std::string::npos) << r.error().message;
	EXPECT_EQ(stateOf(id), SnapshotState::Error);
}

TEST_P(BlockWritesTest, BadInputIsOneLineEach)
{
	std::string id = start();
	Bytes data = randomData(kBlockSize, 1);
	auto expectRefused = [](const Result<void> &r, const char *code, const char *words) {
		ASSERT_FALSE(r);
		EXPECT_EQ(r.error().code, code) << r.error().message;
		EXPECT_NE(r.error().message.find(words), std::string::npos) << r.error().message;
		EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
	};
	expectRefused(writes_.put(*store_, id, 2048, data, checksumOf(data), kNow), errc::kInvalidParameterValue,
		      "out of range");
	Bytes shortBlock(kBlockSize - 1, 1);
	expectRefused(writes_.put(*store_, id, 0, shortBlock, checksumOf(shortBlock), kNow),
		      errc::kInvalidParameterValue, "524288");
	expectRefused(writes_.put(*store_, id, 0, data, "not base64!", kNow), errc::kInvalidParameterValue,
		      "base64 SHA-256");
	expectRefused(writes_.put(*store_, "snap-0000000000000000f", 0, data, checksumOf(data), kNow),
		      errc::kSnapshotNotFound, "not being written");
	expectRefused(writes_.put(*store_, "snap-nope", 0, data, checksumOf(data), kNow), errc::kSnapshotIdMalformed,
		      "snap-nope");

	StartRequest req;
	req.volumeSizeGiB = 0;
	auto zero = writes_.start(*store_, req, kNow);
	ASSERT_FALSE(zero);
	EXPECT_EQ(zero.error().code, errc::kInvalidParameterValue);
	req.volumeSizeGiB = 1;
	req.parentSnapshotId = "snap-0000000000000000e";
	auto orphan = writes_.start(*store_, req, kNow);
	ASSERT_FALSE(orphan);
	EXPECT_EQ(orphan.error().code, errc::kSnapshotNotFound);
}

// An image with data at the start, across a block edge, in its partial
// last block, and a long hole: imported through the same path as block
// writes, it restores as the image reads.
TEST_P(BlockWritesTest, ImportImageRawAndQcow2RestoreAsTheImageReads)
{
	uint64_t size = 40 * kBlockSize + 4096; // the volume rounds up to 1 GiB
	fs::path raw = root_ / "image.raw";
	{
		UniqueFd fd(::open(raw.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
		ASSERT_EQ(::ftruncate(fd.get(), off_t(size)), 0);
		auto write = [&](uint64_t off, const Bytes &b) {
			ASSERT_TRUE(pwriteAll(fd.get(), b, off));
			expected_[off] = b;
		};
		write(0, randomData(3 * kBlockSize, 1));
		write(10 * kBlockSize - 100, randomData(200, 2));
		write(40 * kBlockSize, randomData(4096, 3));
	}
	fs::path qcow = root_ / "image.qcow2";
	auto converted = runProgram({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw.string(), qcow.string()});
	ASSERT_TRUE(converted) << describe(converted);
	for (const auto &[path, format] : {std::pair{raw, std::string("raw")}, std::pair{qcow, std::string("")}}) {
		UniqueFd fd(::open(path.c_str(), O_RDONLY));
		ImportRequest req;
		req.fd = fd.get();
		req.format = format;
		bool started = false;
		req.started = [&](const BlockWrite &w) {
			started = w.state == SnapshotState::Pending;
			return Result<void>{};
		};
		auto imported = importImage(*store_, writes_, req);
		ASSERT_TRUE(imported) << describe(imported);
		EXPECT_TRUE(started);
		ASSERT_EQ(imported->outcome.state, SnapshotState::Completed) << imported->outcome.stateMessage;
		// Blocks 0-2, 9 and 10 (across their edge), 40: zero blocks are not put.
		EXPECT_EQ(imported->blocksPut, 6u) << path;
		expectRestoresExactly(imported->write.snapshotId, kGiB);
	}
}

// A qemu-nbd stopped mid-import (SIGSTOP) fails the import within its
// timeout, in one line; the snapshot ends in error and qemu-nbd is gone.
TEST_P(BlockWritesTest, ImportOfAQcow2WhoseQemuNbdStopsFailsWithinTheTimeout)
{
	fs::path qcow = root_ / "image.qcow2";
	ASSERT_TRUE(runProgram({"qemu-img", "create", "-q", "-f", "qcow2", qcow.string(), "4M"}));
	ASSERT_TRUE(runProgram({"qemu-io", "-f", "qcow2", "-c", "write -P 7 0 4M", qcow.string()}));
	UniqueFd fd(::open(qcow.c_str(), O_RDONLY));
	ImportRequest req;
	req.fd = fd.get();
	req.answerTimeout = std::chrono::seconds(1);
	std::string id;
	req.started = [&](const BlockWrite &w) {
		id = w.snapshotId;
		return Result<void>{};
	};
	std::vector<pid_t> stopped;
	req.progress = [&](uint64_t, uint64_t) {
		if (!stopped.empty())
			return;
		stopped = test::childrenNamed("qemu-nbd");
		for (pid_t pid : stopped)
			::kill(pid, SIGSTOP);
	};
	auto imported = importImage(*store_, writes_, req);
	ASSERT_FALSE(imported);
	EXPECT_EQ(imported.error().message, "qemu-nbd's export of the image answered nothing within 1 s "
					    "([hypervisor] timeout): is qemu-nbd stopped or hung?");
	ASSERT_EQ(stopped.size(), 1u);
	EXPECT_TRUE(test::childrenNamed("qemu-nbd").empty()) << "qemu-nbd killed and reaped";
	EXPECT_EQ(stateOf(id), SnapshotState::Error);
}

// qemu-nbd would open a backing file by the name the image gives, as the
// daemon: such an image is refused before anything is started.
TEST_P(BlockWritesTest, ImportRefusesAQcow2WithABackingFile)
{
	fs::path base = root_ / "base.raw", top = root_ / "top.qcow2";
	UniqueFd(::open(base.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
	fs::resize_file(base, kBlockSize);
	auto made = runProgram({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base.string(), top.string()});
	ASSERT_TRUE(made) << describe(made);
	UniqueFd fd(::open(top.c_str(), O_RDONLY));
	ImportRequest req;
	req.fd = fd.get();
	auto imported = importImage(*store_, writes_, req);
	ASSERT_FALSE(imported);
	EXPECT_EQ(imported.error().code, errc::kInvalidParameterValue);
	EXPECT_NE(imported.error().message.find("backing"), std::string::npos) << imported.error().message;
	auto listed = writes_.list();
	ASSERT_TRUE(listed) << describe(listed);
	EXPECT_TRUE(listed->empty());
}

INSTANTIATE_TEST_SUITE_P(ChunkSizes, BlockWritesTest, ::testing::Values(64 * 1024, 512 * 1024),
			 [](const auto &info) { return std::to_string(info.param / 1024) + "KiB"; });

class LargeChunkTest : public store::test::WithOpenStore<store::test::StoreDirTest>
{
protected:
	LargeChunkTest() : WithOpenStore(1024 * 1024) {}
};

TEST_F(LargeChunkTest, AStoreWithChunksLargerThanABlockIsRefused)
{
	StartRequest req;
	req.volumeSizeGiB = 1;
	auto r = BlockWrites(root_ / "state").start(*store_, req, kNow);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kInvalidParameterValue);
	EXPECT_NE(r.error().message.find("512 KiB"), std::string::npos) << r.error().message;
}

} // namespace
} // namespace virtsnap::engine
