// copy-snapshot's data path (engine/snapshot_copy.h) on stores in
// directories, with snapshots written through the EBS direct APIs' write
// side (no QEMU): a copy within a store adds its manifest and nothing
// else (the store's bytes measured); a copy to another store (another
// master key) restores bit-exact, with chunk ids of its own; an incremental
// copy reads only the chunks that changed since the parent; deleting the
// sources and gc on both stores break no copy; bad input changes nothing.
// What is expected comes from reference disks the test writes itself,
// compared with qemu-img compare, and from the blocks the test changed.
#include <fcntl.h>

#include <map>
#include <set>

#include "core/process.h"
#include "core/unique_fd.h"
#include "engine/block_writes.h"
#include "engine/maintenance.h"
#include "engine/resources.h"
#include "engine/restore.h"
#include "engine/snapshot_copy.h"
#include "store/gc.h"
#include "tests/engine/block_write_util.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine {
namespace {

using store::test::describe;
using test::writeReference;
using store::test::randomData;

const TimePoint kNow = TimePoint(std::chrono::seconds(1'800'000'000));
constexpr uint64_t kGiB = 1ull << 30;

// Regular files' bytes under a store directory, leases left out: what the
// store holds.
uint64_t storeBytes(const fs::path &dir)
{
	uint64_t total = 0;
	for (const auto &[name, desc] : store::test::treeSnapshot(dir))
		if (fs::is_regular_file(dir / name))
			total += fs::file_size(dir / name);
	return total;
}

::testing::AssertionResult sameDisk(const fs::path &image, const fs::path &reference)
{
	auto compared = runProgram({"qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", image.string(),
				    reference.string()});
	if (!compared)
		return ::testing::AssertionFailure() << image << " differs from " << reference << ": "
						     << compared.error().toString();
	return ::testing::AssertionSuccess();
}

class SnapshotCopyTest : public store::test::StoreDirTest
{
protected:
	void SetUp() override
	{
		source_ = initAndOpen();
		destination_ = initAndOpenAt(root_ / "other-store", root_ / "keys" / "other.key");
		ASSERT_TRUE(source_ && destination_);
	}

	// A snapshot of 1 GiB from `blocks` (512 KiB each) over `parent`'s,
	// and its raw reference `reference`: the blocks of `parentBlocks` with
	// `blocks` over them, written by the test (sparse: a copied file
	// would not stay so).
	std::string write(const std::map<uint64_t, Bytes> &blocks, const std::string &parent, const fs::path &reference,
			  std::map<uint64_t, Bytes> parentBlocks = {})
	{
		StartRequest req;
		req.volumeSizeGiB = 1;
		req.parentSnapshotId = parent;
		std::string id = test::writeBlocks(writes_, *source_, req, blocks, kNow);
		for (const auto &[b, data] : blocks)
			parentBlocks[b] = data;
		writeReference(reference, kGiB, parentBlocks);
		return id;
	}

	Result<store::Manifest> copy(store::Store &from, store::Store &to, const std::string &id,
				     const std::string &url = "")
	{
		auto minted = newResourceId("snap-");
		EXPECT_TRUE(minted);
		CopyRequest req;
		req.sourceSnapshotId = id;
		req.snapshotId = *minted;
		req.sourceStoreUrl = url;
		req.ownerId = "0";
		return copySnapshot(from, to, req, nullptr, nullptr);
	}

	::testing::AssertionResult restoresAs(store::Store &store, const std::string &id, const fs::path &reference)
	{
		fs::path target = root_ / (id + "-" + std::to_string(restores_++) + ".raw");
		auto restored = createVolume(store, {id, target, "raw", nullptr, ""});
		if (!restored)
			return ::testing::AssertionFailure() << "restore of " << id << ": " << restored.error().toString();
		auto same = sameDisk(target, reference);
		fs::remove(target);
		return same;
	}

	std::set<store::ChunkId> chunksOf(store::Store &store, const std::string &id)
	{
		std::set<store::ChunkId> out;
		auto m = store.getManifest(id);
		EXPECT_TRUE(m) << describe(m);
		auto codec = store.newCodec();
		auto index = store::SnapshotIndex::load(store, *codec, *m);
		EXPECT_TRUE(index) << describe(index);
		for (uint64_t s = 0; index && s < index->slots(); s++)
			if (!store::isZeroId(index->at(s)))
				out.insert(index->at(s));
		return out;
	}

	void gc(store::Store &store)
	{
		store::GcOptions options;
		options.grace = std::chrono::seconds(0);
		auto collected = store::collectGarbage(store, options);
		ASSERT_TRUE(collected) << describe(collected);
	}

	BlockWrites writes_{root_ / "state"};
	std::unique_ptr<store::Store> source_, destination_;
	int restores_ = 0;
};

TEST_F(SnapshotCopyTest, ACopyWithinTheStoreAddsItsManifestAndNothingElse)
{
	fs::path refA = root_ / "a.ref";
	std::string a = write({{0, randomData(kBlockSize, 1)}, {9, randomData(kBlockSize, 2)}}, "", refA);
	// As a capture of a volume with product codes would have recorded them.
	auto sourceManifest = source_->getManifest(a);
	ASSERT_TRUE(sourceManifest) << describe(sourceManifest);
	sourceManifest->productCodes = {{"abc123", "marketplace"}, {"dp9", "devpay"}};
	ASSERT_TRUE(source_->putManifest(*sourceManifest, true));
	uint64_t before = storeBytes(storeDir());

	auto made = copy(*source_, *source_, a);
	ASSERT_TRUE(made) << describe(made);
	uint64_t manifest = fs::file_size(storeDir() / "snapshots" / (made->snapshotId + ".manifest"));
	EXPECT_EQ(storeBytes(storeDir()) - before, manifest) << "only the copy's manifest is new";
	EXPECT_EQ(made->stats.bytesAdded, 0u);
	EXPECT_EQ(made->stats.bytesTransferred, 0u);
	EXPECT_EQ(made->source.snapshotId, a);
	EXPECT_EQ(made->source.storeId, source_->storeId());
	EXPECT_EQ(made->volumeId, kDirectVolumeId);
	EXPECT_EQ(made->volumeSize, kGiB);
	EXPECT_EQ(made->description, "[Copied " + a + " from this store]");
	EXPECT_EQ(made->productCodes, sourceManifest->productCodes) << "product codes follow into copies";
	EXPECT_TRUE(restoresAs(*source_, made->snapshotId, refA));

	// The source deleted and gc run: the copy holds its chunks.
	ASSERT_TRUE(deleteSnapshot(*source_, a));
	ASSERT_NO_FATAL_FAILURE(gc(*source_));
	EXPECT_TRUE(restoresAs(*source_, made->snapshotId, refA));
}

// A snapshot restored into its volume gives the volume record its product
// codes (and the volume's next snapshots carry them: snapshot_engine.cc);
// a copy, of no volume, gives none.
TEST_F(SnapshotCopyTest, ProductCodesGoIntoTheVolumeASnapshotIsRestoredInto)
{
	std::string a = write({{0, randomData(kBlockSize, 3)}}, "", root_ / "a.ref");
	auto m = source_->getManifest(a);
	ASSERT_TRUE(m) << describe(m);
	m->volumeId = "vol-0123456789abcdef0";
	m->volume = {"qmp:/run/vm.sock", "vm", "vda", "qcow2"};
	m->productCodes = {{"abc123", "marketplace"}};
	ASSERT_TRUE(source_->putManifest(*m, true));

	auto copied = copy(*source_, *destination_, a, "file://" + storeDir().string());
	ASSERT_TRUE(copied) << describe(copied);
	EXPECT_EQ(copied->productCodes, m->productCodes);
	auto none = giveVolumeProductCodes(*destination_, *copied);
	ASSERT_TRUE(none) << describe(none);
	EXPECT_FALSE(*none) << "a copy is of no volume";
	EXPECT_TRUE(listVolumes(*destination_)->empty());

	// The store has no record of the volume (the snapshot came from
	// another host): the manifest makes one.
	auto given = giveVolumeProductCodes(*source_, *m);
	ASSERT_TRUE(given && *given) << describe(given);
	auto record = loadVolume(*source_, m->volumeId);
	ASSERT_TRUE(record && *record) << describe(record);
	EXPECT_EQ((*record)->productCodes, m->productCodes);
	EXPECT_EQ((*record)->instanceKey, "qmp:/run/vm.sock");
	EXPECT_EQ((*record)->diskId, "vda");
	EXPECT_EQ((*record)->size, kGiB);
	EXPECT_FALSE(*giveVolumeProductCodes(*source_, *m)) << "nothing new";

	// Another snapshot's codes add to those the volume has.
	m->productCodes = {{"dp9", "devpay"}, {"abc123", "marketplace"}};
	ASSERT_TRUE(*giveVolumeProductCodes(*source_, *m));
	EXPECT_EQ((*loadVolume(*source_, m->volumeId))->productCodes,
		  (std::vector<ProductCode>{{"abc123", "marketplace"}, {"dp9", "devpay"}}));
}

TEST_F(SnapshotCopyTest, ACopyToAnotherStoreResealsAndAnIncrementalOneReadsOnlyWhatChanged)
{
	fs::path refA = root_ / "a.ref", refB = root_ / "b.ref";
	std::map<uint64_t, Bytes> first;
	for (uint64_t b : {0, 1, 2, 3, 4, 5, 6, 7, 100, 2047})
		first[b] = randomData(kBlockSize, b + 10);
	std::string a = write(first, "", refA);
	uint64_t chunk = source_->chunkSize();

	auto copyA = copy(*source_, *destination_, a, "/elsewhere");
	ASSERT_TRUE(copyA) << describe(copyA);
	EXPECT_EQ(copyA->stats.bytesTransferred, first.size() * kBlockSize) << "every chunk, once";
	EXPECT_GE(copyA->stats.bytesAdded, first.size() * kBlockSize / 2) << "random data does not shrink";
	EXPECT_EQ(copyA->parentSnapshotId, "");
	EXPECT_EQ(copyA->source.storeUrl, "/elsewhere");
	EXPECT_TRUE(restoresAs(*destination_, copyA->snapshotId, refA));
	// Another master key, another domain: no id is shared.
	std::set<store::ChunkId> sourceIds = chunksOf(*source_, a), copyIds = chunksOf(*destination_, copyA->snapshotId);
	EXPECT_EQ(copyIds.size(), sourceIds.size());
	for (const store::ChunkId &id : copyIds)
		EXPECT_FALSE(sourceIds.count(id)) << "chunk id " << store::idHex(id) << " is the source's";

	// B changes block 3 whole, block 100's first half, and adds block 500.
	std::map<uint64_t, Bytes> second;
	second[3] = randomData(kBlockSize, 40);
	second[100] = first[100];
	std::copy_n(randomData(kBlockSize / 2, 41).begin(), kBlockSize / 2, second[100].begin());
	second[500] = randomData(kBlockSize, 42);
	std::string b = write(second, a, refB, first);
	uint64_t changedChunks = kBlockSize / chunk + (kBlockSize / 2) / chunk + kBlockSize / chunk;

	auto copyB = copy(*source_, *destination_, b, "/elsewhere");
	ASSERT_TRUE(copyB) << describe(copyB);
	EXPECT_EQ(copyB->parentSnapshotId, copyA->snapshotId) << "found the copy of B's parent";
	EXPECT_EQ(copyB->captureMode, "incremental");
	EXPECT_EQ(copyB->stats.bytesTransferred, changedChunks * chunk) << "only the changed chunks";
	EXPECT_TRUE(restoresAs(*destination_, copyB->snapshotId, refB));

	// The sources gone and gc on both stores: both copies restore. Then
	// the first copy gone too: the second one does not need it.
	ASSERT_TRUE(deleteSnapshot(*source_, a));
	ASSERT_TRUE(deleteSnapshot(*source_, b));
	ASSERT_NO_FATAL_FAILURE(gc(*source_));
	ASSERT_NO_FATAL_FAILURE(gc(*destination_));
	EXPECT_TRUE(restoresAs(*destination_, copyA->snapshotId, refA));
	EXPECT_TRUE(restoresAs(*destination_, copyB->snapshotId, refB));
	ASSERT_TRUE(deleteSnapshot(*destination_, copyA->snapshotId));
	ASSERT_NO_FATAL_FAILURE(gc(*destination_));
	EXPECT_TRUE(restoresAs(*destination_, copyB->snapshotId, refB));
}

TEST_F(SnapshotCopyTest, AnIncrementalCopyWithoutTheParentsCopyIsFull)
{
	fs::path refA = root_ / "a.ref", refB = root_ / "b.ref";
	std::map<uint64_t, Bytes> first = {{0, randomData(kBlockSize, 1)}, {1, randomData(kBlockSize, 2)}};
	std::string a = write(first, "", refA);
	std::string b = write({{1, randomData(kBlockSize, 3)}}, a, refB, first);
	auto copyB = copy(*source_, *destination_, b);
	ASSERT_TRUE(copyB) << describe(copyB);
	EXPECT_EQ(copyB->parentSnapshotId, "");
	EXPECT_EQ(copyB->stats.bytesTransferred, 2 * kBlockSize);
	EXPECT_TRUE(restoresAs(*destination_, copyB->snapshotId, refB));
}

TEST_F(SnapshotCopyTest, BadInputChangesNothing)
{
	fs::path refA = root_ / "a.ref";
	std::string a = write({{0, randomData(kBlockSize, 1)}}, "", refA);
	auto before = store::test::treeSnapshot(root_ / "other-store");

	auto unknown = copy(*source_, *destination_, "snap-0123456789abcdef0");
	ASSERT_FALSE(unknown);
	EXPECT_EQ(unknown.error().code, errc::kSnapshotNotFound) << unknown.error().toString();
	EXPECT_EQ(unknown.error().message.find('\n'), std::string::npos);

	auto small = initAndOpenAt(root_ / "small-chunks", root_ / "keys" / "small.key", 4096);
	ASSERT_TRUE(small);
	auto regrid = copy(*source_, *small, a);
	ASSERT_FALSE(regrid);
	EXPECT_EQ(regrid.error().code, errc::kInvalidParameterValue) << regrid.error().toString();

	EXPECT_EQ(store::test::treeSnapshot(root_ / "other-store"), before);
}

} // namespace
} // namespace virtsnap::engine
