// Damaged stores: every flipped bit is an error with code StoreCorrupted
// (or at least an error), never wrong bytes and never a crash. On every
// backend.
#include <atomic>
#include <thread>

#include "store/chunk_codec.h"
#include "store/manifest.h"
#include "store/pack.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

class CorruptionTest : public OpenBackendStoreTest
{
protected:
	void SetUp() override
	{
		OpenBackendStoreTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		data_ = {randomData(20000, 1), compressibleData(30000, 2), randomData(5000, 3)};
		auto writer = store_->newWriter();
		for (const Bytes &d : data_) {
			auto id = writer->put(*codec_, d, ChunkType::Data);
			ASSERT_TRUE(id) << describe(id);
			ids_.push_back(*id);
		}
		ASSERT_TRUE(writer->commit());
		auto packs = objectsEndingWith(*backend_, "packs/", ".pack");
		ASSERT_EQ(packs.size(), 1u);
		pack_ = packs[0];
		idx_ = indexOfPack(pack_);
	}

	Store::ChunkLocation where(size_t i)
	{
		auto loc = store_->locate(ids_[i]);
		EXPECT_TRUE(loc);
		return loc.value_or(Store::ChunkLocation{});
	}

	std::vector<Bytes> data_;
	std::vector<ChunkId> ids_;
	std::string pack_, idx_;
};

TEST_P(CorruptionTest, FlippedBodyByteFailsAuthentication)
{
	auto loc = where(0);
	// In the middle of the ciphertext, clear of header and tag.
	uint64_t at = loc.offset + kBlobHeaderSize + (loc.length - kBlobOverhead) / 2;
	flipObjectByte(*backend_, pack_, at);

	auto r = store_->readChunk(*codec_, ids_[0]);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
	EXPECT_NE(r.error().message.find("authentication"), std::string::npos) << r.error().message;

	// The other chunks of the pack are intact, and a fresh Store (which
	// opens the pack anew) sees the damage too.
	auto other = store_->readChunk(*codec_, ids_[1]);
	ASSERT_TRUE(other) << describe(other);
	EXPECT_EQ(*other, data_[1]);
	auto fresh = openOrNull();
	ASSERT_TRUE(fresh);
	auto freshCodec = fresh->newCodec();
	auto again = fresh->readChunk(*freshCodec, ids_[0]);
	ASSERT_FALSE(again);
	EXPECT_EQ(again.error().code, errc::kCorrupt);

	// Undoing the flip restores the chunk: the failure was that byte.
	flipObjectByte(*backend_, pack_, at);
	auto restored = store_->readChunk(*codec_, ids_[0]);
	ASSERT_TRUE(restored) << describe(restored);
	EXPECT_EQ(*restored, data_[0]);
}

TEST_P(CorruptionTest, FlippedTagByteFailsAuthentication)
{
	auto loc = where(1);
	uint64_t at = loc.offset + loc.length - 1;
	flipObjectByte(*backend_, pack_, at, 0x80);
	auto r = store_->readChunk(*codec_, ids_[1]);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
	EXPECT_NE(r.error().message.find("authentication"), std::string::npos) << r.error().message;
}

TEST_P(CorruptionTest, EveryFlippedHeaderByteFailsLoudly)
{
	auto loc = where(2);
	for (uint64_t i = 0; i < kBlobHeaderSize; i++) {
		for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80)}) {
			flipObjectByte(*backend_, pack_, loc.offset + i, mask);
			auto r = store_->readChunk(*codec_, ids_[2]);
			EXPECT_EQ(codeOf(r), errc::kCorrupt) << "header byte " << i << " mask " << int(mask) << ": "
							     << describe(r);
			flipObjectByte(*backend_, pack_, loc.offset + i, mask);
		}
	}
	auto intact = store_->readChunk(*codec_, ids_[2]);
	ASSERT_TRUE(intact) << describe(intact);
	EXPECT_EQ(*intact, data_[2]);
}

TEST_P(CorruptionTest, FlippedIndexByteFailsOpen)
{
	auto size = objectSize(*backend_, idx_);
	for (uint64_t at : {uint64_t(0), uint64_t(10), size / 2, size - 1}) {
		flipObjectByte(*backend_, idx_, at);
		auto r = open(keyFile());
		EXPECT_EQ(codeOf(r), errc::kCorrupt) << "index byte " << at << ": " << describe(r);
		flipObjectByte(*backend_, idx_, at);
	}
	auto ok = open(keyFile());
	EXPECT_TRUE(ok) << describe(ok);
}

TEST_P(CorruptionTest, FlippedIndexByteFailsRefresh)
{
	// A second writer's pack, learnt by store_ only on refresh.
	auto other = openOrNull();
	ASSERT_TRUE(other);
	auto otherCodec = other->newCodec();
	auto writer = other->newWriter();
	auto id = writer->put(*otherCodec, randomData(7000, 9), ChunkType::Data);
	ASSERT_TRUE(id);
	ASSERT_TRUE(writer->commit());
	auto loc = other->locate(*id);
	ASSERT_TRUE(loc);
	std::string idx = packIndexName(loc->pack);
	flipObjectByte(*backend_, idx, objectSize(*backend_, idx) / 2);

	auto r = store_->refresh();
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
	EXPECT_NE(r.error().message.find(fs::path(idx).filename().string()), std::string::npos) << r.error().message;
	auto read = store_->readChunk(*codec_, *id);
	ASSERT_FALSE(read);
	EXPECT_EQ(read.error().code, errc::kCorrupt);
	// What store_ knew before stays readable.
	auto known = store_->readChunk(*codec_, ids_[0]);
	EXPECT_TRUE(known) << describe(known);
}

TEST_P(CorruptionTest, IndexOfAnotherPackDoesNotOpen)
{
	// A valid index under another pack's name: the name is in the AAD.
	auto other = openOrNull();
	ASSERT_TRUE(other);
	auto otherCodec = other->newCodec();
	auto writer = other->newWriter();
	auto id = writer->put(*otherCodec, randomData(7000, 10), ChunkType::Data);
	ASSERT_TRUE(id);
	ASSERT_TRUE(writer->commit());
	auto loc = other->locate(*id);
	ASSERT_TRUE(loc);
	copyObject(*backend_, idx_, packIndexName(loc->pack));

	auto r = open(keyFile());
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
}

// Regression, visible under -Db_sanitize=thread: readChunk once read
// packs_ after releasing its lock while refresh() could reallocate it.
TEST_P(CorruptionTest, FailingReadsWhileAnotherThreadLearnsPacks)
{
	auto loc = where(0);
	flipObjectByte(*backend_, pack_, loc.offset + kBlobHeaderSize + 1);

	auto writer = openOrNull();
	ASSERT_TRUE(writer);
	std::atomic<bool> done{false};
	std::atomic<int> wrongResults{0};
	std::vector<std::thread> readers;
	for (int t = 0; t < 3; t++)
		readers.emplace_back([&] {
			auto codec = store_->newCodec();
			while (!done) {
				auto bad = store_->readChunk(*codec, ids_[0]);
				auto good = store_->readChunk(*codec, ids_[1]);
				if (codeOf(bad) != errc::kCorrupt || !good || *good != data_[1])
					wrongResults++;
			}
		});
	// Many small packs, each learnt by store_ while the readers run.
	auto codec = writer->newCodec();
	std::vector<ChunkId> added;
	for (uint64_t i = 0; i < 64; i++) {
		auto w = writer->newWriter();
		auto id = w->put(*codec, randomData(100, 900 + i), ChunkType::Data);
		ASSERT_TRUE(id);
		ASSERT_TRUE(w->commit());
		added.push_back(*id);
		ASSERT_TRUE(store_->refresh());
	}
	done = true;
	for (auto &th : readers)
		th.join();
	EXPECT_EQ(wrongResults.load(), 0);
	for (const ChunkId &id : added)
		EXPECT_TRUE(store_->contains(id));
}

TEST_P(CorruptionTest, TruncatedPackIsAnErrorNotACrash)
{
	auto last = where(2);
	auto first = where(0);
	// Cut inside the last blob.
	truncateObject(*backend_, pack_, last.offset + last.length / 2);

	auto r = store_->readChunk(*codec_, ids_[2]);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt) << r.error().message;
	auto fresh = openOrNull();
	ASSERT_TRUE(fresh);
	auto freshCodec = fresh->newCodec();
	auto r2 = fresh->readChunk(*freshCodec, ids_[2]);
	ASSERT_FALSE(r2);
	EXPECT_EQ(r2.error().code, errc::kCorrupt);

	// Blobs before the cut still read.
	auto ok = fresh->readChunk(*freshCodec, ids_[0]);
	ASSERT_TRUE(ok) << describe(ok);
	EXPECT_EQ(*ok, data_[0]);

	// Down to inside the first blob's header, then to nothing.
	for (uint64_t size : {first.offset + 10, uint64_t(0)}) {
		truncateObject(*backend_, pack_, size);
		for (size_t i = 0; i < ids_.size(); i++) {
			auto gone = store_->readChunk(*codec_, ids_[i]);
			EXPECT_FALSE(gone) << size << " " << i;
		}
	}
}

TEST_P(CorruptionTest, DeletedPackIsAnError)
{
	ASSERT_TRUE(removedObject(*backend_, pack_));
	auto fresh = openOrNull();
	ASSERT_TRUE(fresh);
	auto freshCodec = fresh->newCodec();
	auto r = fresh->readChunk(*freshCodec, ids_[0]);
	EXPECT_FALSE(r);
}

class ManifestCorruptionTest : public BackendStoreTest
{
protected:
	Manifest manifest(const std::string &id)
	{
		Manifest m;
		m.snapshotId = id;
		m.volumeId = "vol-0123456789abcdef0";
		m.startTime = "2026-01-01T00:00:00.000Z";
		m.volumeSize = 1 << 20;
		m.chunkSize = 65536;
		m.pageEntries = 1024;
		m.indexPages = {kZeroChunk};
		m.description = "for " + id;
		return m;
	}
};

TEST_P(ManifestCorruptionTest, ManifestCopiedOverAnotherFails)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	const std::string a = "snap-0000000000000000a", b = "snap-0000000000000000b";
	ASSERT_TRUE(store->putManifest(manifest(a)));
	ASSERT_TRUE(store->putManifest(manifest(b)));
	copyObject(*backend_, "snapshots/" + a + ".manifest", "snapshots/" + b + ".manifest");

	auto r = store->getManifest(b);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
	auto ok = store->getManifest(a);
	ASSERT_TRUE(ok) << describe(ok);
	EXPECT_EQ(ok->snapshotId, a);
	// A listing either fails loudly or leaves the copy out; it never
	// hands out a's manifest a second time, as b.
	auto list = store->listManifests();
	if (list) {
		size_t seenA = 0;
		for (const Manifest &m : *list) {
			EXPECT_NE(m.snapshotId, b);
			seenA += m.snapshotId == a;
		}
		EXPECT_EQ(seenA, 1u);
	} else {
		EXPECT_EQ(list.error().code, errc::kCorrupt);
	}
}

TEST_P(ManifestCorruptionTest, FlippedManifestByteIsCorrupted)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	const std::string id = "snap-0123456789abcdef0";
	ASSERT_TRUE(store->putManifest(manifest(id)));
	const std::string name = "snapshots/" + id + ".manifest";
	auto size = objectSize(*backend_, name);
	for (uint64_t at : {uint64_t(5), uint64_t(6), uint64_t(20), size / 2, size - 1}) {
		flipObjectByte(*backend_, name, at);
		auto r = store->getManifest(id);
		EXPECT_EQ(codeOf(r), errc::kCorrupt) << "manifest byte " << at << ": " << describe(r);
		flipObjectByte(*backend_, name, at);
	}
	auto ok = store->getManifest(id);
	EXPECT_TRUE(ok) << describe(ok);

	truncateObject(*backend_, name, 10);
	auto truncated = store->getManifest(id);
	ASSERT_FALSE(truncated);
	EXPECT_EQ(truncated.error().code, errc::kCorrupt);
}

INSTANTIATE_TEST_SUITE_P(, CorruptionTest, ::testing::ValuesIn(virtsnap::test::backendNames()), backendSuffix);
INSTANTIATE_TEST_SUITE_P(, ManifestCorruptionTest, ::testing::ValuesIn(virtsnap::test::backendNames()),
			 backendSuffix);

} // namespace
} // namespace virtsnap::store::test
