// collectGarbage against FORMAT.md ("Garbage collection"): it removes what
// no manifest needs and nothing else, spares files younger than the grace
// period, rewrites sparse packs without changing a byte of what they keep,
// refuses to run beside another user of the store, and a dry run changes
// nothing. On every backend. Ages are set, never waited for: through a
// backend that reports objects older than they are, since the mtimes of
// RADOS and S3 objects are the server's to set.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "store/gc.h"
#include "store/snapshot_index.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

using namespace std::chrono_literals;


// Moves a file's mtime `by` into the past: a directory's temporary files,
// which sweepPartial() judges by their mtime, not through list().
void ageFile(const fs::path &path, std::chrono::seconds by)
{
	struct timespec ts[2];
	::clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec -= by.count();
	ts[1] = ts[0];
	ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW), 0) << path << ": " << std::strerror(errno);
}

// How much older than the backend says each aged object is, shared by every
// connection of one test as the mtimes of a directory would be.
class Ages
{
public:
	void set(const std::string &name, std::chrono::seconds by)
	{
		std::lock_guard lock(mutex_);
		by_[name] = by;
	}
	std::chrono::seconds of(const std::string &name) const
	{
		std::lock_guard lock(mutex_);
		auto it = by_.find(name);
		return it == by_.end() ? std::chrono::seconds(0) : it->second;
	}

private:
	mutable std::mutex mutex_;
	std::map<std::string, std::chrono::seconds> by_;
};

// Another backend with its objects as old as `ages` makes them.
class AgedBackend : public Backend
{
public:
	AgedBackend(std::unique_ptr<Backend> inner, std::shared_ptr<Ages> ages)
		: inner_(std::move(inner)), ages_(std::move(ages))
	{
	}

	std::string describe() const override { return inner_->describe(); }
	bool local() const override { return inner_->local(); }
	Result<void> put(const std::string &name, std::span<const uint8_t> data) override { return inner_->put(name, data); }
	Result<void> create(const std::string &name, std::span<const uint8_t> data) override
	{
		return inner_->create(name, data);
	}
	Result<std::unique_ptr<ObjectWriter>> openWriter(const std::string &name) override
	{
		return inner_->openWriter(name);
	}
	Result<Bytes> get(const std::string &name) override { return inner_->get(name); }
	Result<void> getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out) override
	{
		return inner_->getRange(name, offset, out);
	}
	Result<ObjectInfo> stat(const std::string &name) override
	{
		VS_ASSIGN(ObjectInfo info, inner_->stat(name));
		return aged(std::move(info));
	}
	Result<void> list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit) override
	{
		return inner_->list(prefix, [&](const ObjectInfo &info) { visit(aged(info)); });
	}
	Result<void> remove(const std::string &name) override { return inner_->remove(name); }
	Result<std::chrono::system_clock::time_point> now() override { return inner_->now(); }
	Result<Swept> sweepPartial(std::chrono::seconds grace, bool dryRun) override
	{
		return inner_->sweepPartial(grace, dryRun);
	}

private:
	ObjectInfo aged(ObjectInfo info) const
	{
		info.modified -= ages_->of(info.name);
		return info;
	}

	std::unique_ptr<Backend> inner_;
	std::shared_ptr<Ages> ages_;
};

class GcTest : public OpenBackendStoreTest
{
protected:
	GcTest() : OpenBackendStoreTest(kChunk) {}

	std::unique_ptr<Backend> connect() override
	{
		auto inner = OpenBackendStoreTest::connect();
		return inner ? std::make_unique<AgedBackend>(std::move(inner), ages_) : nullptr;
	}

	// Makes an object look `by` old to the store (not to leases, which
	// are not what the store holds).
	void age(const std::string &name, std::chrono::seconds by) { ages_->set(name, by); }

	void ageAll(std::chrono::seconds by)
	{
		auto listed = backend_->list("", [&](const ObjectInfo &info) {
			if (info.name.rfind("locks/", 0) != 0)
				age(info.name, by);
		});
		ASSERT_TRUE(listed) << describe(listed);
	}

	void SetUp() override
	{
		OpenBackendStoreTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		// Even seeds: random chunks.
		shared_ = chunks(kSlots, 1000);
		onlyA_ = chunks(kSlots, 2000);
		onlyB_ = chunks(kSlots, 3000);
		diskA_ = concat({shared_, onlyA_});
		diskB_ = concat({shared_, onlyB_});
	}

	// Puts `data` as chunks through one writer: one new pack.
	std::vector<ChunkId> putChunks(const std::vector<Bytes> &data)
	{
		auto writer = store_->newWriter();
		std::vector<ChunkId> ids;
		for (const Bytes &d : data) {
			auto id = writer->put(*codec_, d, ChunkType::Data);
			EXPECT_TRUE(id) << describe(id);
			ids.push_back(id.value_or(ChunkId{}));
		}
		auto c = writer->commit();
		EXPECT_TRUE(c) << describe(c);
		return ids;
	}

	// Stores `disk` as snapshot `id` through its own writer, so its new
	// chunks and its index pages land in a pack of their own.
	void snapshot(const std::string &id, const Bytes &disk)
	{
		auto writer = store_->newWriter();
		SnapshotIndex index(disk.size(), kChunk);
		ASSERT_NO_FATAL_FAILURE(putSlots(*writer, disk, index));
		saveSnapshot(id, index, *writer);
	}

	// Reads every slot of `id` through `store` (chunk by chunk, the way a
	// restore does) and compares with `disk`.
	void expectRestores(Store &store, const std::string &id, const Bytes &disk)
	{
		auto codec = store.newCodec();
		auto m = store.getManifest(id);
		ASSERT_TRUE(m) << describe(m);
		auto index = SnapshotIndex::load(store, *codec, *m);
		ASSERT_TRUE(index) << describe(index);
		ASSERT_EQ(index->volumeSize(), disk.size());
		Bytes out(disk.size());
		for (uint64_t s = 0; s < index->slots(); s++) {
			if (isZeroId(index->at(s)))
				continue;
			auto data = store.readChunk(*codec, index->at(s));
			ASSERT_TRUE(data) << "slot " << s << ": " << describe(data);
			ASSERT_EQ(data->size(), index->slotLength(s)) << "slot " << s;
			std::memcpy(out.data() + s * kChunk, data->data(), data->size());
		}
		EXPECT_TRUE(out == disk) << id << " does not restore to its data";
	}

	void expectRestoresFresh(const std::string &id, const Bytes &disk)
	{
		auto fresh = openOrNull();
		ASSERT_TRUE(fresh);
		expectRestores(*fresh, id, disk);
	}

	GcReport gc(GcOptions opts = {})
	{
		auto r = collectGarbage(*store_, opts);
		EXPECT_TRUE(r) << describe(r);
		return r ? *r : GcReport{};
	}

	uint64_t packsBytes()
	{
		uint64_t total = 0;
		auto listed = backend_->list("packs/", [&](const ObjectInfo &info) { total += info.size; });
		EXPECT_TRUE(listed) << describe(listed);
		return total;
	}

	// Writes that never finished: a directory's temporary files, or what
	// the backend would sweep as such.
	size_t countTemps()
	{
		if (backend_->local())
			return filesContaining(url_, ".tmp-").size();
		auto swept = backend_->sweepPartial(std::chrono::seconds(0), true);
		EXPECT_TRUE(swept) << describe(swept);
		return swept ? swept->objects : 0;
	}

	// The one pack whose index names `id`.
	std::string packHolding(const ChunkId &id)
	{
		auto loc = store_->locate(id);
		EXPECT_TRUE(loc);
		return loc ? packName(loc->pack) : std::string();
	}

	std::vector<ChunkId> idsOf(const std::vector<Bytes> &data)
	{
		std::vector<ChunkId> ids;
		for (const Bytes &d : data)
			ids.push_back(codec_->idOf(d));
		return ids;
	}

	std::shared_ptr<Ages> ages_ = std::make_shared<Ages>();
	std::vector<Bytes> shared_, onlyA_, onlyB_;
	Bytes diskA_, diskB_;
};

// Shared chunks in a pack of their own, then A's and B's own chunks and
// pages in one pack each: deleting A leaves one wholly dead pack.
class GcSweepTest : public GcTest
{
protected:
	void SetUp() override
	{
		GcTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		putChunks(shared_);
		snapshot("snap-a", diskA_);
		snapshot("snap-b", diskB_);
		ASSERT_EQ(countPacks(), 3u);
		packA_ = packHolding(codec_->idOf(onlyA_[0]));
		packB_ = packHolding(codec_->idOf(onlyB_[0]));
		packShared_ = packHolding(codec_->idOf(shared_[0]));
	}

	std::string packA_, packB_, packShared_;
};

TEST_P(GcSweepTest, RemovesOnlyTheChunksOfTheDeletedSnapshot)
{
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	uint64_t before = packsBytes();

	GcReport r = gc();
	EXPECT_EQ(r.snapshots, 1u);
	EXPECT_EQ(r.chunksReferenced, 2 * kSlots + 1); // shared, B's own, B's page
	EXPECT_EQ(r.chunksMissing, 0u);
	EXPECT_EQ(r.packsRemoved, 1u);
	EXPECT_EQ(r.packsRepacked, 0u);
	EXPECT_EQ(r.chunksUnreferenced, kSlots + 1);
	EXPECT_EQ(r.chunksRemoved, kSlots + 1);
	EXPECT_TRUE(r.warnings.empty()) << r.warnings[0];

	EXPECT_FALSE(hasObject(*backend_, packA_));
	EXPECT_FALSE(hasObject(*backend_, indexOfPack(packA_)));
	EXPECT_TRUE(hasObject(*backend_, packB_));
	EXPECT_TRUE(hasObject(*backend_, packShared_));
	EXPECT_EQ(countPacks(), 2u);
	EXPECT_EQ(countIndexes(), 2u);
	uint64_t after = packsBytes();
	EXPECT_LT(after, before);
	EXPECT_EQ(before - after, r.bytesFreed);

	expectRestores(*store_, "snap-b", diskB_);
	expectRestoresFresh("snap-b", diskB_);
	auto fresh = openOrNull();
	ASSERT_TRUE(fresh);
	for (const ChunkId &id : idsOf(onlyA_)) {
		EXPECT_FALSE(store_->contains(id));
		EXPECT_FALSE(fresh->contains(id));
	}
}

TEST_P(GcSweepTest, ForgetsRemovedPacksSoTheSameStoreStoresTheirChunksAgain)
{
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	ASSERT_EQ(gc().packsRemoved, 1u);

	// Dedup against a deleted pack would make this snapshot name chunks
	// that no longer exist.
	auto writer = store_->newWriter();
	for (const Bytes &d : onlyA_)
		ASSERT_TRUE(writer->put(*codec_, d, ChunkType::Data));
	ASSERT_TRUE(writer->commit());
	EXPECT_EQ(writer->chunksNew(), kSlots);
	for (const ChunkId &id : idsOf(onlyA_)) {
		auto data = store_->readChunk(*codec_, id);
		EXPECT_TRUE(data) << describe(data);
	}
	snapshot("snap-a2", diskA_);
	expectRestoresFresh("snap-a2", diskA_);
}

TEST_P(GcSweepTest, NothingYoungerThanTheGracePeriodIsRemoved)
{
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	auto before = storeSnapshot(*backend_);

	// Just written.
	GcReport r = gc();
	EXPECT_EQ(r.packsRemoved, 0u);
	EXPECT_EQ(r.packsSpared, 1u);
	EXPECT_EQ(r.chunksUnreferenced, kSlots + 1);
	EXPECT_EQ(storeSnapshot(*backend_), before);

	// Half an hour: still within the default hour.
	ageAll(30min);
	before = storeSnapshot(*backend_);
	EXPECT_EQ(gc().packsRemoved, 0u);
	EXPECT_EQ(storeSnapshot(*backend_), before);

	// An old pack whose index is young (or the reverse) is spared too.
	age(packA_, 2h);
	EXPECT_EQ(gc().packsRemoved, 0u);
	age(packA_, 30min);
	age(indexOfPack(packA_), 2h);
	EXPECT_EQ(gc().packsRemoved, 0u);
	EXPECT_TRUE(hasObject(*backend_, packA_));

	// A shorter grace is honoured too.
	GcOptions shortGrace;
	shortGrace.grace = 10min;
	age(packA_, 20min);
	age(indexOfPack(packA_), 20min);
	EXPECT_EQ(gc(shortGrace).packsRemoved, 1u);
	EXPECT_FALSE(hasObject(*backend_, packA_));
	expectRestoresFresh("snap-b", diskB_);
}

TEST_P(GcSweepTest, SecondRunRemovesNothing)
{
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	ASSERT_TRUE(store_->deleteManifest("snap-b"));
	GcReport first = gc();
	EXPECT_EQ(first.packsRemoved, 3u); // the shared pack is dead now too
	EXPECT_EQ(countPacks(), 0u);
	EXPECT_EQ(countIndexes(), 0u);

	auto before = storeSnapshot(*backend_);
	GcReport second = gc();
	EXPECT_EQ(second.packsRemoved, 0u);
	EXPECT_EQ(second.packsRepacked, 0u);
	EXPECT_EQ(second.tmpFilesRemoved, 0u);
	EXPECT_EQ(second.chunksUnreferenced, 0u);
	EXPECT_EQ(second.bytesFreed, 0u);
	EXPECT_EQ(storeSnapshot(*backend_), before);
}

TEST_P(GcSweepTest, RefusedWhileALeaseIsHeldAndAllowedOnceItIsGone)
{
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	auto before = storeSnapshot(*backend_);

	// What another process or host taking a snapshot holds.
	auto other = openOrNull();
	ASSERT_TRUE(other);
	auto lease = other->lease(Lease::Kind::Shared, "snapshot of vm1");
	ASSERT_TRUE(lease) << describe(lease);
	auto refused = collectGarbage(*store_, {});
	ASSERT_FALSE(refused);
	EXPECT_EQ(refused.error().code, errc::kIncorrectState);
	EXPECT_NE(refused.error().message.find("is in use by"), std::string::npos) << refused.error().message;
	EXPECT_NE(refused.error().message.find("snapshot of vm1"), std::string::npos) << refused.error().message;
	EXPECT_EQ(storeSnapshot(*backend_), before);
	// A dry run is refused as well, and the other way round too.
	GcOptions dry;
	dry.dryRun = true;
	EXPECT_EQ(codeOf(collectGarbage(*store_, dry)), errc::kIncorrectState);
	auto mine = store_->lease(Lease::Kind::Shared, "restore");
	ASSERT_TRUE(mine) << describe(mine);
	lease->reset();
	EXPECT_EQ(codeOf(collectGarbage(*other, dry)), errc::kIncorrectState);
	mine->reset();

	// The refusals left no lease behind; with none held, gc runs.
	auto held = heldLeases(store_->backend());
	ASSERT_TRUE(held) << describe(held);
	EXPECT_TRUE(held->empty()) << held->front();
	GcReport r = gc();
	EXPECT_EQ(r.packsRemoved, 1u);
	expectRestores(*store_, "snap-b", diskB_);
	held = heldLeases(store_->backend());
	ASSERT_TRUE(held) << describe(held);
	EXPECT_TRUE(held->empty()) << "gc kept its lease: " << held->front();
}

TEST_P(GcSweepTest, NoSnapshotStartsWhileGcHoldsTheStore)
{
	auto gcLease = store_->lease(Lease::Kind::Exclusive, "gc");
	ASSERT_TRUE(gcLease) << describe(gcLease);
	auto other = openOrNull();
	ASSERT_TRUE(other);
	auto refused = other->lease(Lease::Kind::Shared, "snapshot of vm1");
	ASSERT_FALSE(refused);
	EXPECT_EQ(refused.error().code, errc::kIncorrectState);
	EXPECT_NE(refused.error().message.find("gc"), std::string::npos) << refused.error().message;
	EXPECT_FALSE(other->lease(Lease::Kind::Exclusive, "gc"));
	gcLease->reset();
	EXPECT_TRUE(other->lease(Lease::Kind::Shared, "snapshot of vm1"));
}

// A holder that stops renewing blocks nobody past its lease, even one that
// still runs (a host cut off from the store).
TEST_P(GcSweepTest, AnExpiredLeaseBlocksNobody)
{
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	StoreOptions stale;
	stale.lease.duration = std::chrono::seconds(1);
	stale.lease.renewInterval = std::chrono::seconds(3600);
	auto other = open(keyFile(), stale);
	ASSERT_TRUE(other) << describe(other);
	auto lease = (*other)->lease(Lease::Kind::Shared, "snapshot of a host that hangs");
	ASSERT_TRUE(lease) << describe(lease);
	StoreOptions judge = stale;
	auto mine = open(keyFile(), judge);
	ASSERT_TRUE(mine) << describe(mine);
	EXPECT_EQ(codeOf(collectGarbage(**mine, {})), errc::kIncorrectState);
	// RADOS and S3 keep object times in whole seconds: two ticks of their
	// clock make the lease at least a second older than its duration.
	std::this_thread::sleep_for(std::chrono::milliseconds(local() ? 1500 : 2100));
	EXPECT_FALSE((*lease)->held());
	auto r = collectGarbage(**mine, {});
	ASSERT_TRUE(r) << describe(r);
	EXPECT_EQ(r->packsRemoved, 1u);
}

TEST_P(GcSweepTest, AnUnreadableManifestOrIndexPageStopsGcBeforeAnyRemoval)
{
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	auto before = storeSnapshot(*backend_);

	const std::string manifest = "snapshots/snap-b.manifest";
	flipObjectByte(*backend_, manifest, objectSize(*backend_, manifest) / 2);
	auto r = collectGarbage(*store_, {});
	EXPECT_EQ(codeOf(r), errc::kCorrupt) << describe(r);
	flipObjectByte(*backend_, manifest, objectSize(*backend_, manifest) / 2);
	EXPECT_EQ(storeSnapshot(*backend_), before);

	auto m = store_->getManifest("snap-b");
	ASSERT_TRUE(m);
	auto page = store_->locate(m->indexPages[0]);
	ASSERT_TRUE(page);
	flipObjectByte(*backend_, packB_, page->offset + kBlobHeaderSize + 10);
	before = storeSnapshot(*backend_);
	r = collectGarbage(*store_, {});
	EXPECT_EQ(codeOf(r), errc::kCorrupt) << describe(r);
	EXPECT_NE(r.error().message.find("nothing was removed"), std::string::npos) << r.error().message;
	EXPECT_EQ(storeSnapshot(*backend_), before);
	EXPECT_TRUE(hasObject(*backend_, packA_));
}

TEST_P(GcTest, DryRunChangesNothingAndPredictsTheRealRun)
{
	// Every kind of work at once: a half dead pack (the shared chunks
	// plus as many no one needs) to repack, A's pack to remove, a pack
	// without index and an old temporary file.
	std::vector<Bytes> mixed = shared_;
	auto unneeded = chunks(kSlots, 4000);
	mixed.insert(mixed.end(), unneeded.begin(), unneeded.end());
	putChunks(mixed);
	std::string packMixed = packHolding(codec_->idOf(shared_[0]));
	snapshot("snap-a", diskA_);
	snapshot("snap-b", diskB_);
	auto extra = chunks(3, 5000);
	putChunks(extra);
	ASSERT_TRUE(removedObject(*backend_, indexOfPack(packHolding(codec_->idOf(extra[0])))));
	// Only a directory's writers leave what a test can make and age by
	// hand (an S3 upload's parts are no objects, a RADOS write leaves
	// nothing).
	const uint64_t temps = local() ? 1 : 0;
	if (local()) {
		fs::path temp = fs::path(url_) / "snapshots" / "snap-x.manifest.tmp-0123456789abcdef";
		ASSERT_TRUE(writeFileAtomic(temp, asBytes("partial")));
		ageFile(temp, 2h);
	}
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	ageAll(2h);

	auto before = storeSnapshot(*backend_);
	GcOptions dry;
	dry.dryRun = true;
	GcReport d = gc(dry);
	EXPECT_TRUE(d.dryRun);
	EXPECT_EQ(storeSnapshot(*backend_), before);
	EXPECT_EQ(d.packsRemoved, 2u); // A's, and the one without index
	EXPECT_EQ(d.packsWithoutIndexRemoved, 1u);
	EXPECT_EQ(d.packsRepacked, 1u);
	EXPECT_EQ(d.packsWritten, 1u);
	EXPECT_EQ(d.chunksCopied, kSlots);
	EXPECT_EQ(d.tmpFilesRemoved, temps);
	EXPECT_GT(d.bytesFreed, 0u);
	expectRestores(*store_, "snap-b", diskB_);

	GcReport r = gc();
	EXPECT_FALSE(r.dryRun);
	EXPECT_FALSE(hasObject(*backend_, packMixed));
	EXPECT_EQ(r.packsRemoved, d.packsRemoved);
	EXPECT_EQ(r.packsWithoutIndexRemoved, d.packsWithoutIndexRemoved);
	EXPECT_EQ(r.packsRepacked, d.packsRepacked);
	EXPECT_EQ(r.packsWritten, d.packsWritten);
	EXPECT_EQ(r.chunksCopied, d.chunksCopied);
	EXPECT_EQ(r.chunksRemoved, d.chunksRemoved);
	EXPECT_EQ(r.tmpFilesRemoved, d.tmpFilesRemoved);
	EXPECT_EQ(r.bytesRemoved, d.bytesRemoved);
	EXPECT_EQ(r.bytesWritten, d.bytesWritten);
	EXPECT_EQ(r.bytesFreed, d.bytesFreed);
	EXPECT_TRUE(r.warnings.empty()) << r.warnings[0];
	expectRestores(*store_, "snap-b", diskB_);
	expectRestoresFresh("snap-b", diskB_);
}

TEST_P(GcTest, RepackKeepsLiveChunksByteForByteAndDropsTheOldPack)
{
	// A's pack holds the shared chunks, A's own and A's page; B's pack only
	// B's own and B's page. Deleting A leaves A's pack about half dead.
	snapshot("snap-a", diskA_);
	snapshot("snap-b", diskB_);
	ASSERT_EQ(countPacks(), 2u);
	std::string packA = packHolding(codec_->idOf(onlyA_[0]));
	ASSERT_EQ(packHolding(codec_->idOf(shared_[0])), packA);
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));

	GcOptions strict;
	strict.repackThreshold = 0.9;
	auto before = storeSnapshot(*backend_);
	GcReport none = gc(strict);
	EXPECT_EQ(none.packsRepacked, 0u);
	EXPECT_EQ(none.chunksUnreferenced, kSlots + 1);
	EXPECT_EQ(storeSnapshot(*backend_), before);

	GcReport r = gc();
	EXPECT_EQ(r.packsRepacked, 1u);
	EXPECT_EQ(r.packsWritten, 1u);
	EXPECT_EQ(r.packsRemoved, 0u);
	EXPECT_EQ(r.chunksCopied, kSlots);
	EXPECT_EQ(r.chunksRemoved, kSlots + 1);
	EXPECT_GT(r.bytesFreed, 0u);
	EXPECT_FALSE(hasObject(*backend_, packA));
	EXPECT_FALSE(hasObject(*backend_, indexOfPack(packA)));
	EXPECT_EQ(countPacks(), 2u);
	EXPECT_EQ(countIndexes(), 2u);
	EXPECT_EQ(countTemps(), 0u);

	// Same ids, now in the new pack, same bytes.
	for (const ChunkId &id : idsOf(shared_)) {
		auto loc = store_->locate(id);
		ASSERT_TRUE(loc);
		EXPECT_NE(packName(loc->pack), packA);
	}
	for (const ChunkId &id : idsOf(onlyA_))
		EXPECT_FALSE(store_->contains(id));
	expectRestores(*store_, "snap-b", diskB_);
	expectRestoresFresh("snap-b", diskB_);

	// The new pack is fully live: nothing more to do.
	GcReport again = gc();
	EXPECT_EQ(again.packsRepacked + again.packsRemoved, 0u);
	EXPECT_EQ(again.chunksUnreferenced, 0u);
}

// A reader that holds no lease (an NBD export's) and learnt where chunks
// were before gc repacked their pack reads them where they are now.
TEST_P(GcTest, AReaderThatLearntThePacksBeforeARepackStillReadsTheChunks)
{
	snapshot("snap-a", diskA_);
	snapshot("snap-b", diskB_);
	auto stale = openOrNull();
	ASSERT_TRUE(stale);
	ageAll(2h);
	ASSERT_TRUE(store_->deleteManifest("snap-a"));
	GcReport r = gc();
	ASSERT_EQ(r.packsRepacked, 1u);
	auto codec = stale->newCodec();
	for (const Bytes &chunk : shared_) {
		auto read = stale->readChunk(*codec, codec_->idOf(chunk));
		ASSERT_TRUE(read) << describe(read);
		EXPECT_EQ(*read, chunk);
	}
}

TEST_P(GcTest, RepackMergesSparsePacksIntoOne)
{
	// Three packs of four chunks; a snapshot needs one chunk of each.
	std::vector<Bytes> keep;
	for (uint64_t p = 0; p < 3; p++) {
		auto data = chunks(4, 100 * (p + 1));
		putChunks(data);
		keep.push_back(data[1]);
	}
	ASSERT_EQ(countPacks(), 3u);
	Bytes disk = concat({keep});
	snapshot("snap-c", disk);
	ASSERT_EQ(countPacks(), 4u); // plus the page's
	ageAll(2h);

	GcReport r = gc();
	EXPECT_EQ(r.packsRepacked, 3u);
	EXPECT_EQ(r.packsWritten, 1u);
	EXPECT_EQ(r.chunksCopied, 3u);
	EXPECT_EQ(r.chunksRemoved, 9u);
	EXPECT_EQ(countPacks(), 2u);
	expectRestores(*store_, "snap-c", disk);
	expectRestoresFresh("snap-c", disk);
}

TEST_P(GcTest, ChunkStoredTwiceIsCopiedOnceWhenBothPacksAreRepacked)
{
	// Two writers that did not know of each other's packs (two processes)
	// both stored `twice`, each beside chunks no one needs.
	Bytes twice = randomData(kChunk, 42);
	auto other = openOrNull();
	ASSERT_TRUE(other);
	putChunks({twice, randomData(kChunk, 43), randomData(kChunk, 44)});
	{
		auto codec = other->newCodec();
		auto writer = other->newWriter();
		for (uint64_t seed : {45, 46})
			ASSERT_TRUE(writer->put(*codec, randomData(kChunk, seed), ChunkType::Data));
		ASSERT_TRUE(writer->put(*codec, twice, ChunkType::Data));
		ASSERT_TRUE(writer->commit());
	}
	other.reset();
	ASSERT_EQ(countPacks(), 2u);
	snapshot("snap-c", twice);
	ageAll(2h);

	GcReport r = gc();
	EXPECT_EQ(r.packsRepacked, 2u);
	EXPECT_EQ(r.packsWritten, 1u);
	EXPECT_EQ(r.chunksCopied, 1u);
	EXPECT_EQ(countPacks(), 2u); // the new one and the page's
	expectRestoresFresh("snap-c", twice);
}

// What a gc that died after writing its new pack and before removing the
// packs it repacked leaves: their live chunks twice, in a sparse pack and
// in a full one. The next gc keeps the full one's copy rather than copy
// them a third time, and its own Store, whose map named the sparse pack for
// them, still finds every one.
TEST_P(GcTest, RepackCopiesNothingThatAPackWhichStaysHolds)
{
	auto other = openOrNull();
	ASSERT_TRUE(other);
	std::vector<Bytes> sparse = shared_;
	auto unneeded = chunks(kSlots, 4000);
	sparse.insert(sparse.end(), unneeded.begin(), unneeded.end());
	putChunks(sparse);
	std::string sparsePack = packHolding(codec_->idOf(shared_[0]));
	{
		auto codec = other->newCodec();
		auto writer = other->newWriter();
		for (const Bytes &d : shared_)
			ASSERT_TRUE(writer->put(*codec, d, ChunkType::Data));
		ASSERT_TRUE(writer->commit());
	}
	other.reset();
	ASSERT_TRUE(store_->refresh());
	ASSERT_EQ(packHolding(codec_->idOf(shared_[0])), sparsePack);
	snapshot("snap-a", diskA_);
	ageAll(2h);

	GcReport r = gc();
	EXPECT_EQ(r.packsRepacked, 1u);
	EXPECT_EQ(r.chunksCopied, 0u);
	EXPECT_EQ(r.packsWritten, 0u);
	EXPECT_EQ(r.chunksRemoved, kSlots);
	EXPECT_TRUE(r.warnings.empty()) << r.warnings[0];
	EXPECT_FALSE(hasObject(*backend_, sparsePack));
	EXPECT_EQ(countPacks(), 2u); // the full one and snap-a's own
	for (const ChunkId &id : idsOf(shared_)) {
		EXPECT_TRUE(store_->contains(id));
		auto data = store_->readChunk(*codec_, id);
		EXPECT_TRUE(data) << describe(data);
	}
	expectRestores(*store_, "snap-a", diskA_);
	expectRestoresFresh("snap-a", diskA_);
	GcReport again = gc();
	EXPECT_EQ(again.packsRepacked + again.packsRemoved + again.chunksUnreferenced, 0u);
}

TEST_P(GcTest, LeftoversOlderThanGraceAreRemovedYoungerOnesAndUnknownFilesKept)
{
	// Packs whose writer died before writing the index: one old, one young.
	auto oldData = chunks(3, 10);
	putChunks(oldData);
	std::string oldPack = packHolding(codec_->idOf(oldData[0]));
	auto youngData = chunks(3, 20);
	putChunks(youngData);
	std::string youngPack = packHolding(codec_->idOf(youngData[0]));
	ASSERT_TRUE(removedObject(*backend_, indexOfPack(oldPack)));
	ASSERT_TRUE(removedObject(*backend_, indexOfPack(youngPack)));

	// Temporary files are a directory's alone (as in DryRunChangesNothingAndPredictsTheRealRun).
	const fs::path dir = url_, packDir = fs::path(oldPack).parent_path();
	std::vector<fs::path> oldTemps;
	fs::path youngTemp;
	if (local()) {
		oldTemps = {
			dir / packDir / "00112233445566778899aabbccddeeff.pack.tmp-0123456789abcdef",
			dir / "snapshots" / "snap-x.manifest.tmp-0123456789abcdef",
			dir / "records" / "tags" / "vol-1.json.sealed.tmp-0123456789abcdef",
		};
		youngTemp = dir / "snapshots" / "snap-y.manifest.tmp-fedcba9876543210";
	}
	std::vector<std::string> unknown = {"packs/NOTES", "snapshots/README", (packDir / "not-a-pack.pack").string()};
	for (const fs::path &p : oldTemps) {
		ASSERT_TRUE(makeDirs(p.parent_path()));
		ASSERT_TRUE(writeFileAtomic(p, asBytes("leftover")));
		ageFile(p, 2h);
	}
	if (local()) {
		ASSERT_TRUE(writeFileAtomic(youngTemp, asBytes("in flight")));
	}
	for (const std::string &name : unknown) {
		ASSERT_TRUE(backend_->put(name, asBytes("someone's")));
		age(name, 2h);
	}
	age(oldPack, 2h);
	age("config.json", 2h);

	GcReport r = gc();
	EXPECT_EQ(r.packsRemoved, 1u);
	EXPECT_EQ(r.packsWithoutIndexRemoved, 1u);
	EXPECT_EQ(r.packsSpared, 1u);
	EXPECT_EQ(r.tmpFilesRemoved, oldTemps.size());
	EXPECT_FALSE(hasObject(*backend_, oldPack));
	EXPECT_TRUE(hasObject(*backend_, youngPack));
	for (const fs::path &p : oldTemps)
		EXPECT_FALSE(fs::exists(p)) << p;
	if (local()) {
		EXPECT_TRUE(fs::exists(youngTemp));
	}
	for (const std::string &name : unknown)
		EXPECT_TRUE(hasObject(*backend_, name)) << name;
	EXPECT_TRUE(hasObject(*backend_, "config.json"));
	EXPECT_TRUE(openOrNull());
}

TEST_P(GcTest, PackWithoutIndexHoldingReferencedChunksIsKept)
{
	snapshot("snap-a", diskA_);
	std::string pack = packHolding(codec_->idOf(onlyA_[0]));
	// The index lost some other way; this Store still knows the chunks.
	ASSERT_TRUE(removedObject(*backend_, indexOfPack(pack)));
	ageAll(2h);

	GcReport r = gc();
	EXPECT_EQ(r.packsRemoved, 0u);
	EXPECT_TRUE(hasObject(*backend_, pack));
	ASSERT_EQ(r.warnings.size(), 1u);
	EXPECT_NE(r.warnings[0].find("re-index"), std::string::npos) << r.warnings[0];
	EXPECT_EQ(r.chunksMissing, 2 * kSlots + 1);
}

// What a gc that crashed between removing a repacked pack's index and the
// pack leaves, and a writer that died before its index and was retried: a
// pack without index whose referenced chunks another pack's index names.
// They are stored there: it goes like any pack without index.
TEST_P(GcTest, PackWithoutIndexWhoseChunksAnotherPackHoldsIsRemoved)
{
	putChunks(shared_);
	std::string orphan = packHolding(codec_->idOf(shared_[0]));
	{
		// Its index gone, another process stored them again.
		ASSERT_TRUE(removedObject(*backend_, indexOfPack(orphan)));
		auto other = openOrNull();
		ASSERT_TRUE(other);
		auto codec = other->newCodec();
		auto writer = other->newWriter();
		for (const Bytes &d : shared_)
			ASSERT_TRUE(writer->put(*codec, d, ChunkType::Data));
		ASSERT_TRUE(writer->commit());
		EXPECT_EQ(writer->chunksNew(), kSlots);
	}
	ASSERT_TRUE(store_->refresh());
	snapshot("snap-a", diskA_);
	ageAll(2h);

	GcReport r = gc();
	EXPECT_EQ(r.packsRemoved, 1u);
	EXPECT_EQ(r.packsWithoutIndexRemoved, 1u);
	EXPECT_TRUE(r.warnings.empty()) << r.warnings[0];
	EXPECT_EQ(r.chunksMissing, 0u);
	EXPECT_FALSE(hasObject(*backend_, orphan));
	expectRestores(*store_, "snap-a", diskA_);
	expectRestoresFresh("snap-a", diskA_);
}

TEST_P(GcTest, EmptyStore)
{
	auto before = storeSnapshot(*backend_);
	for (bool dryRun : {true, false}) {
		GcOptions opts;
		opts.dryRun = dryRun;
		GcReport r = gc(opts);
		EXPECT_EQ(r.snapshots, 0u);
		EXPECT_EQ(r.chunksReferenced, 0u);
		EXPECT_EQ(r.packsRemoved + r.packsRepacked + r.tmpFilesRemoved + r.bytesFreed, 0u);
		EXPECT_TRUE(r.warnings.empty());
	}
	EXPECT_EQ(storeSnapshot(*backend_), before);
}

INSTANTIATE_TEST_SUITE_P(, GcTest, ::testing::ValuesIn(virtsnap::test::backendNames()), backendSuffix);
INSTANTIATE_TEST_SUITE_P(, GcSweepTest, ::testing::ValuesIn(virtsnap::test::backendNames()), backendSuffix);

} // namespace
} // namespace virtsnap::store::test
