// ChunkWriter and Store::readChunk: round trips, dedup, keyed ids, the
// visibility rule (nothing before commit), pack rollover, threads, and the
// on-disk shape of packs and their indexes (FORMAT.md).
#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "store/chunk_codec.h"
#include "store/chunk_writer.h"
#include "store/pack.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

class ChunkTest : public StoreDirTest
{
};

// Writes `chunks` with one writer, commits, and returns their ids.
std::vector<ChunkId> putAll(Store &store, ChunkCodec &codec, const std::vector<Bytes> &chunks)
{
	std::vector<ChunkId> ids;
	auto writer = store.newWriter();
	for (const Bytes &c : chunks) {
		auto id = writer->put(codec, c, ChunkType::Data);
		EXPECT_TRUE(id) << describe(id);
		ids.push_back(id.value_or(kZeroChunk));
	}
	auto r = writer->commit();
	EXPECT_TRUE(r) << describe(r);
	return ids;
}

// The decrypted index of the pack file `pack` (a path to its .pack).
PackIndex readIndex(const Store &store, const fs::path &pack)
{
	fs::path idx = pack;
	idx.replace_extension(".idx");
	auto sealed = readFile(idx);
	EXPECT_TRUE(sealed) << describe(sealed);
	if (!sealed)
		return {};
	auto plain = openObject(ObjectType::PackIndex, store.domain().encKey, pack.stem().string(), *sealed);
	EXPECT_TRUE(plain) << describe(plain);
	if (!plain)
		return {};
	auto index = parsePackIndex(*plain);
	EXPECT_TRUE(index) << describe(index);
	return index.value_or(PackIndex{});
}

TEST_F(ChunkTest, PutCommitReadReturnsIdenticalBytes)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();

	std::vector<Bytes> chunks = {
		compressibleData(Store::kDefaultChunkSize, 1),
		randomData(Store::kDefaultChunkSize, 2),
		randomData(1, 3),
		randomData(1000, 4),
		compressibleData(1000, 5),
		Bytes{0x00, 0x01},
	};
	auto ids = putAll(*store, *codec, chunks);
	ASSERT_EQ(ids.size(), chunks.size());

	for (size_t i = 0; i < chunks.size(); i++) {
		EXPECT_EQ(ids[i], codec->idOf(chunks[i])) << i;
		EXPECT_TRUE(store->contains(ids[i])) << i;
		auto back = store->readChunk(*codec, ids[i]);
		ASSERT_TRUE(back) << i << ": " << describe(back);
		EXPECT_EQ(*back, chunks[i]) << i;
	}

	// zstd only when it is smaller (FORMAT.md "Chunks"): random data is
	// stored as is, text shrinks.
	auto compressed = store->locate(ids[0]);
	ASSERT_TRUE(compressed);
	EXPECT_LT(compressed->length, chunks[0].size() / 4);
	for (size_t i : {1, 2, 3}) {
		auto loc = store->locate(ids[i]);
		ASSERT_TRUE(loc) << i;
		EXPECT_EQ(loc->length, chunks[i].size() + kBlobOverhead) << i;
	}

	// A fresh Store learns the same chunks from the pack indexes alone.
	auto reopened = Store::open(storeDir(), keyFile());
	ASSERT_TRUE(reopened) << describe(reopened);
	auto codec2 = (*reopened)->newCodec();
	for (size_t i = 0; i < chunks.size(); i++) {
		auto back = (*reopened)->readChunk(*codec2, ids[i]);
		ASSERT_TRUE(back) << i << ": " << describe(back);
		EXPECT_EQ(*back, chunks[i]) << i;
	}
}

TEST_F(ChunkTest, SameContentIsStoredOnce)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	Bytes a = randomData(5000, 10);

	auto writer = store->newWriter();
	auto id1 = writer->put(*codec, a, ChunkType::Data);
	auto id2 = writer->put(*codec, a, ChunkType::Data);
	ASSERT_TRUE(id1 && id2);
	EXPECT_EQ(*id1, *id2);
	EXPECT_EQ(writer->chunksNew(), 1u);
	EXPECT_EQ(writer->chunksReused(), 1u);
	ASSERT_TRUE(writer->commit());
	auto loc = store->locate(*id1);
	ASSERT_TRUE(loc);
	EXPECT_EQ(writer->bytesAdded(), loc->length);
	EXPECT_EQ(countPacks(), 1u);
	EXPECT_EQ(countIndexes(), 1u);
	auto packs = filesEndingWith(storeDir() / "packs", ".pack");
	ASSERT_EQ(packs.size(), 1u);
	EXPECT_EQ(readIndex(*store, packs[0]).entries.size(), 1u);

	// A later job finds it in the store: nothing added, no new pack.
	auto second = store->newWriter();
	auto id3 = second->put(*codec, a, ChunkType::Data);
	ASSERT_TRUE(id3);
	EXPECT_EQ(*id3, *id1);
	EXPECT_EQ(second->chunksNew(), 0u);
	EXPECT_EQ(second->chunksReused(), 1u);
	EXPECT_EQ(second->bytesAdded(), 0u);
	ASSERT_TRUE(second->commit());
	EXPECT_EQ(countPacks(), 1u);
	EXPECT_EQ(countIndexes(), 1u);

	// ...and a store opened afterwards does too.
	auto other = Store::open(storeDir(), keyFile());
	ASSERT_TRUE(other);
	auto third = (*other)->newWriter();
	auto otherCodec = (*other)->newCodec();
	ASSERT_TRUE(third->put(*otherCodec, a, ChunkType::Data));
	EXPECT_EQ(third->chunksNew(), 0u);
	EXPECT_EQ(third->bytesAdded(), 0u);
	ASSERT_TRUE(third->commit());
	EXPECT_EQ(countPacks(), 1u);
}

TEST_F(ChunkTest, IdsAreKeyedPerDomain)
{
	// The same master key for both: the domain, not the master key, keys
	// the ids.
	auto a = initAndOpenAt(root_ / "a", keyFile());
	auto b = initAndOpenAt(root_ / "b", keyFile());
	ASSERT_TRUE(a && b);
	EXPECT_NE(a->domain().id, b->domain().id);

	Bytes data = randomData(4096, 20);
	auto codecA = a->newCodec();
	auto codecB = b->newCodec();
	auto idA = putAll(*a, *codecA, {data});
	auto idB = putAll(*b, *codecB, {data});
	ASSERT_EQ(idA.size(), 1u);
	ASSERT_EQ(idB.size(), 1u);
	EXPECT_NE(idA[0], idB[0]);
	EXPECT_NE(idA[0], crypto::sha256(data)); // keyed, not a plain hash
	EXPECT_FALSE(b->contains(idA[0]));
	EXPECT_FALSE(b->readChunk(*codecB, idA[0]));

	// A blob of one domain does not open in the other.
	auto loc = a->locate(idA[0]);
	ASSERT_TRUE(loc);
	auto packBytes = readFile(packPath(a->backend().describe(), loc->pack));
	ASSERT_TRUE(packBytes);
	std::span<const uint8_t> blob(packBytes->data() + loc->offset, loc->length);
	auto foreign = codecB->decode(idA[0], blob);
	ASSERT_FALSE(foreign);
	EXPECT_EQ(foreign.error().code, errc::kCorrupt);
}

TEST_F(ChunkTest, NothingIsVisibleBeforeCommit)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	Bytes data = randomData(3000, 30);

	auto writer = store->newWriter();
	auto id = writer->put(*codec, data, ChunkType::Data);
	ASSERT_TRUE(id);
	EXPECT_FALSE(store->contains(*id));
	EXPECT_FALSE(store->locate(*id));
	EXPECT_FALSE(store->readChunk(*codec, *id));
	EXPECT_EQ(countPacks(), 0u);
	EXPECT_EQ(countIndexes(), 0u);
	auto other = Store::open(storeDir(), keyFile());
	ASSERT_TRUE(other);
	auto otherCodec = (*other)->newCodec();
	EXPECT_FALSE((*other)->readChunk(*otherCodec, *id));

	ASSERT_TRUE(writer->commit());
	EXPECT_TRUE(store->contains(*id));
	EXPECT_EQ(countPacks(), 1u);
	EXPECT_EQ(countIndexes(), 1u);
	EXPECT_EQ(countTemps(), 0u);
	auto back = (*other)->readChunk(*otherCodec, *id);
	ASSERT_TRUE(back) << describe(back);
	EXPECT_EQ(*back, data);
}

TEST_F(ChunkTest, WriterDroppedWithoutCommitLeavesNoFiles)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	std::vector<ChunkId> ids;
	{
		auto writer = store->newWriter();
		for (uint64_t i = 0; i < 20; i++) {
			auto id = writer->put(*codec, randomData(10000, 40 + i), ChunkType::Data);
			ASSERT_TRUE(id);
			ids.push_back(*id);
		}
		// Nothing is visible: the pack (written by the writer's own thread,
		// so maybe not yet) exists under a temporary name only.
		EXPECT_LE(countTemps(), 1u);
		EXPECT_EQ(countPacks(), 0u);
	}
	EXPECT_EQ(countPacks(), 0u);
	EXPECT_EQ(countIndexes(), 0u);
	EXPECT_EQ(countTemps(), 0u);
	for (const ChunkId &id : ids) {
		EXPECT_FALSE(store->contains(id));
		EXPECT_FALSE(store->readChunk(*codec, id));
	}
	auto reopened = Store::open(storeDir(), keyFile());
	ASSERT_TRUE(reopened) << describe(reopened);
	for (const ChunkId &id : ids)
		EXPECT_FALSE((*reopened)->contains(id));
}

TEST_F(ChunkTest, CommitWithoutPutsWritesNothing)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto writer = store->newWriter();
	ASSERT_TRUE(writer->commit());
	EXPECT_EQ(countPacks(), 0u);
	EXPECT_EQ(countIndexes(), 0u);
	EXPECT_EQ(countTemps(), 0u);
}

TEST_F(ChunkTest, PacksRollOverPastTargetSize)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	constexpr size_t kChunks = 640; // 40 MiB of random 64 KiB chunks
	std::vector<ChunkId> ids;
	auto writer = store->newWriter();
	for (size_t i = 0; i < kChunks; i++) {
		auto id = writer->put(*codec, randomData(Store::kDefaultChunkSize, 1000 + i), ChunkType::Data);
		ASSERT_TRUE(id) << describe(id);
		ids.push_back(*id);
	}
	ASSERT_TRUE(writer->commit());
	EXPECT_EQ(writer->chunksNew(), kChunks);
	EXPECT_EQ(writer->bytesAdded(), kChunks * (Store::kDefaultChunkSize + kBlobOverhead));

	auto packs = filesEndingWith(storeDir() / "packs", ".pack");
	ASSERT_EQ(packs.size(), 2u);
	EXPECT_EQ(countIndexes(), 2u);
	EXPECT_EQ(countTemps(), 0u);
	std::vector<uint64_t> sizes;
	size_t entries = 0;
	for (const fs::path &p : packs) {
		sizes.push_back(fs::file_size(p));
		entries += readIndex(*store, p).entries.size();
	}
	std::sort(sizes.begin(), sizes.end());
	// The full pack closed with the blob that took it past the target.
	EXPECT_GE(sizes[1], kPackTargetSize);
	EXPECT_LT(sizes[1], kPackTargetSize + Store::kDefaultChunkSize + kBlobOverhead);
	EXPECT_EQ(sizes[0] + sizes[1], 2 * kPackHeaderSize + writer->bytesAdded());
	EXPECT_EQ(entries, kChunks);

	auto reopened = Store::open(storeDir(), keyFile());
	ASSERT_TRUE(reopened);
	auto codec2 = (*reopened)->newCodec();
	for (size_t i = 0; i < kChunks; i++) {
		auto back = (*reopened)->readChunk(*codec2, ids[i]);
		ASSERT_TRUE(back) << i << ": " << describe(back);
		ASSERT_EQ(*back, randomData(Store::kDefaultChunkSize, 1000 + i)) << i;
	}
}

// Packs are written and made durable on the writer's own threads; their
// errors come back from a later put() or, at the latest, from commit().
TEST_F(ChunkTest, APackThatCannotBeCreatedFailsTheCommit)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	auto writer = store->newWriter();
	// No directory for any pack.
	fs::remove_all(storeDir() / "packs");
	std::ofstream(storeDir() / "packs") << "not a directory";
	for (uint64_t i = 0; i < 10; i++)
		(void)writer->put(*codec, randomData(Store::kDefaultChunkSize, i), ChunkType::Data);
	auto committed = writer->commit();
	ASSERT_FALSE(committed);
	EXPECT_NE(committed.error().message.find("packs"), std::string::npos) << committed.error().toString();
	// Later puts say so too.
	auto again = writer->put(*codec, randomData(100, 99), ChunkType::Data);
	ASSERT_FALSE(again);
	EXPECT_EQ(again.error().message, committed.error().message);
}

TEST_F(ChunkTest, AFullPackThatCannotBeMadeDurableFailsTheCommit)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	auto writer = store->newWriter();
	// Enough for the appender to start the first pack (it writes batches).
	uint64_t next = 1;
	for (size_t bytes = 0; bytes <= ChunkWriter::kAppendBatchBytes; bytes += Store::kDefaultChunkSize)
		ASSERT_TRUE(writer->put(*codec, randomData(Store::kDefaultChunkSize, next++), ChunkType::Data));
	// A directory where the first pack is to be renamed to. The pack file
	// is created by the writer's thread: wait for it (a condition, not a
	// speed: the deadline only keeps a broken writer from hanging the test).
	std::vector<fs::path> temps;
	for (int i = 0; i < 3000 && temps.empty(); i++) {
		temps = filesContaining(storeDir() / "packs", ".tmp-");
		if (temps.empty())
			std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	ASSERT_EQ(temps.size(), 1u);
	std::string name = temps[0].filename().string();
	fs::create_directory(temps[0].parent_path() / name.substr(0, name.find(".tmp-")));

	// Past the target size: the first pack goes to the finisher, which
	// fails. Whether the puts after it see that depends on timing; commit
	// always does.
	for (uint64_t i = next; i < 700; i++)
		(void)writer->put(*codec, randomData(Store::kDefaultChunkSize, i), ChunkType::Data);
	auto committed = writer->commit();
	ASSERT_FALSE(committed);
	EXPECT_NE(committed.error().message.find("rename"), std::string::npos) << committed.error().toString();
	// The second pack was never made visible either: nothing names it.
	EXPECT_EQ(countIndexes(), 0u);
}

// Packs are written with O_DIRECT through an aligned buffer where the file
// system allows it, buffered elsewhere (tmpfs); the file is the same: the
// header, then the blobs back to back, no padding.
TEST_F(ChunkTest, PackFilesHoldExactlyTheirBlobsWithOrWithoutDirectIo)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	std::vector<fs::path> dirs{storeDir()};
	if (fs::is_directory("/dev/shm"))
		dirs.push_back("/dev/shm");
	for (const fs::path &dir : dirs) {
		SCOPED_TRACE(dir.string());
		fs::path storeLike = dir / ("vs-pack-test-" + std::to_string(::getpid()));
		fs::create_directories(storeLike);
		LocalBackend backend(storeLike);
		auto w = PackWriter::create(backend);
		ASSERT_TRUE(w) << describe(w);
		// Odd sizes, about 3 MiB in all: several buffers and a short end.
		std::vector<Bytes> blobs;
		uint64_t expected = kPackHeaderSize;
		for (uint64_t i = 0; i < 1000; i++) {
			blobs.push_back(randomData(3001 + i % 7, 7000 + i));
			ChunkId id{};
			putLe64(id.data(), i + 1);
			ASSERT_TRUE(w->append({id, ChunkType::Data, 0, 1, blobs.back()}));
			expected += blobs.back().size();
		}
		auto index = w->finish(store->domain());
		ASSERT_TRUE(index) << describe(index);
		fs::path pack = packPath(storeLike, index->packId);
		EXPECT_EQ(fs::file_size(pack), expected);
		auto bytes = readFile(pack);
		ASSERT_TRUE(bytes);
		ASSERT_EQ(index->entries.size(), blobs.size());
		for (size_t i = 0; i < blobs.size(); i++) {
			const PackEntry &e = index->entries[i];
			ASSERT_EQ(e.length, blobs[i].size());
			ASSERT_TRUE(std::equal(blobs[i].begin(), blobs[i].end(), bytes->begin() + long(e.offset))) << i;
		}
		fs::remove_all(storeLike);
	}
}

TEST_F(ChunkTest, ConcurrentPutsWithOwnCodecs)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	// Thread t puts contents [150t, 150t + 300): every content but the
	// first and last 150 is put by two threads at about the same time.
	constexpr int kThreads = 4;
	constexpr uint64_t kStride = 150, kPerThread = 300;
	constexpr uint64_t kDistinct = kStride * (kThreads - 1) + kPerThread;
	auto content = [](uint64_t i) { return randomData(8192 + (i % 7) * 100, 5000 + i); };

	auto writer = store->newWriter();
	std::vector<std::vector<ChunkId>> got(kThreads);
	std::atomic<int> failures{0};
	std::vector<std::thread> threads;
	for (int t = 0; t < kThreads; t++)
		threads.emplace_back([&, t] {
			auto codec = store->newCodec();
			for (uint64_t i = kStride * t; i < kStride * t + kPerThread; i++) {
				auto id = writer->put(*codec, content(i), ChunkType::Data);
				if (!id) {
					failures++;
					continue;
				}
				got[t].push_back(*id);
			}
		});
	for (auto &th : threads)
		th.join();
	ASSERT_EQ(failures.load(), 0);
	ASSERT_TRUE(writer->commit());

	EXPECT_EQ(writer->chunksNew(), kDistinct);
	EXPECT_EQ(writer->chunksReused(), kThreads * kPerThread - kDistinct);
	size_t entries = 0;
	for (const fs::path &p : filesEndingWith(storeDir() / "packs", ".pack"))
		entries += readIndex(*store, p).entries.size();
	EXPECT_EQ(entries, kDistinct);

	// Readers in parallel too, each with its own codec.
	auto codec = store->newCodec();
	std::atomic<int> readFailures{0};
	threads.clear();
	for (int t = 0; t < kThreads; t++)
		threads.emplace_back([&, t] {
			auto c = store->newCodec();
			for (uint64_t k = 0; k < got[t].size(); k++) {
				uint64_t i = kStride * t + k;
				auto back = store->readChunk(*c, got[t][k]);
				if (!back || *back != content(i) || got[t][k] != c->idOf(content(i)))
					readFailures++;
			}
		});
	for (auto &th : threads)
		th.join();
	EXPECT_EQ(readFailures.load(), 0);
}

TEST_F(ChunkTest, ChunksOfAnotherStoreInstanceAreFoundOnMiss)
{
	auto a = initAndOpen();
	ASSERT_TRUE(a);
	auto b = openOrNull(storeDir(), keyFile());
	ASSERT_TRUE(b);
	auto codecA = a->newCodec();
	auto codecB = b->newCodec();

	Bytes data = randomData(20000, 60);
	auto ids = putAll(*b, *codecB, {data, compressibleData(30000, 61)});
	ASSERT_EQ(ids.size(), 2u);
	EXPECT_FALSE(a->contains(ids[0])); // not yet learnt

	auto back = a->readChunk(*codecA, ids[0]);
	ASSERT_TRUE(back) << describe(back);
	EXPECT_EQ(*back, data);
	EXPECT_TRUE(a->contains(ids[1])); // the same refresh learnt the whole pack

	// And explicitly: a second batch, then refresh().
	auto more = putAll(*b, *codecB, {randomData(100, 62)});
	ASSERT_EQ(more.size(), 1u);
	EXPECT_FALSE(a->contains(more[0]));
	ASSERT_TRUE(a->refresh());
	EXPECT_TRUE(a->contains(more[0]));
	ASSERT_TRUE(a->refresh()); // idempotent
}

// FORMAT.md "Packs": "VSPACK01" | pack id, then blobs back to back, so a
// pack can be re-indexed by scanning its blob headers.
TEST_F(ChunkTest, PackFileCanBeReindexedFromBlobHeaders)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	std::vector<Bytes> chunks;
	for (uint64_t i = 0; i < 10; i++)
		chunks.push_back(i % 2 ? randomData(100 + 1000 * i, 70 + i) : compressibleData(100 + 1000 * i, 70 + i));
	auto ids = putAll(*store, *codec, chunks);

	auto packs = filesEndingWith(storeDir() / "packs", ".pack");
	ASSERT_EQ(packs.size(), 1u);
	auto bytes = readFile(packs[0]);
	ASSERT_TRUE(bytes);
	ASSERT_GE(bytes->size(), kPackHeaderSize);
	EXPECT_EQ(std::string((const char *)bytes->data(), 8), "VSPACK01");
	std::string packHex = toHex(std::span(*bytes).subspan(8, 16));
	EXPECT_EQ(packs[0].stem().string(), packHex);
	EXPECT_EQ(packs[0].parent_path().filename().string(), packHex.substr(0, 2));

	PackIndex index = readIndex(*store, packs[0]);
	EXPECT_EQ(toHex(index.packId), packHex);
	ASSERT_EQ(index.entries.size(), chunks.size());

	uint64_t offset = kPackHeaderSize;
	size_t n = 0;
	while (offset < bytes->size()) {
		auto h = parseBlobHeader(std::span(*bytes).subspan(offset));
		ASSERT_TRUE(h) << "at " << offset << ": " << describe(h);
		ASSERT_LT(n, chunks.size());
		EXPECT_EQ(h->id, ids[n]);
		EXPECT_EQ(h->domain, store->domain().id);
		EXPECT_EQ(h->type, ChunkType::Data);
		EXPECT_EQ(h->rawLength, chunks[n].size());
		EXPECT_EQ(h->flags, n % 2 == 0 ? kFlagZstd : 0) << n;
		const PackEntry &e = index.entries[n];
		EXPECT_EQ(e.id, ids[n]);
		EXPECT_EQ(e.offset, offset);
		EXPECT_EQ(e.length, h->blobLength());
		EXPECT_EQ(e.rawLength, chunks[n].size());
		auto loc = store->locate(ids[n]);
		ASSERT_TRUE(loc);
		EXPECT_EQ(loc->offset, offset);
		EXPECT_EQ(loc->length, h->blobLength());
		offset += h->blobLength();
		n++;
	}
	EXPECT_EQ(offset, bytes->size());
	EXPECT_EQ(n, chunks.size());
}

// Found by tests/fuzz (chunk-blob): decode allocated whatever raw length an
// authenticated header claimed, up to 4 GiB, before decompressing.
TEST_F(ChunkTest, AHeaderClaimingMoreThanAChunkCanHoldIsCorrupt)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	Bytes chunk = compressibleData(4096, 7);
	Bytes blob;
	ASSERT_TRUE(codec->encode(codec->idOf(chunk), ChunkType::Data, chunk, blob));
	ASSERT_TRUE(parseBlobHeader(blob));
	for (size_t field : {48, 52}) {
		Bytes bad = blob;
		putLe32(bad.data() + field, kMaxChunkSize + 1);
		EXPECT_EQ(codeOf(parseBlobHeader(bad)), errc::kCorrupt) << field;
		EXPECT_EQ(codeOf(codec->decode(codec->idOf(chunk), bad)), errc::kCorrupt) << field;
	}
}

// Found by tests/fuzz (pack-index): any entry parsed, and readChunk then
// allocated its length (up to 4 GiB) and read at its offset.
TEST(PackIndexFormat, AnEntryNamingAnImpossibleBlobIsCorrupt)
{
	PackIndex index;
	index.packId[0] = 1;
	PackEntry good{ChunkId{7}, ChunkType::Data, 1, kPackHeaderSize, uint32_t(kBlobOverhead + 10), 4096};
	index.entries = {good};
	ASSERT_TRUE(parsePackIndex(serializePackIndex(index)));
	std::vector<PackEntry> bad(6, good);
	bad[0].type = ChunkType(9);
	bad[1].offset = 0;
	bad[2].offset = ~uint64_t(0) - 10;
	bad[3].length = uint32_t(kBlobOverhead - 1);
	bad[4].length = 0xffffffff;
	bad[5].rawLength = kMaxChunkSize + 1;
	for (size_t i = 0; i < bad.size(); i++) {
		index.entries = {good, bad[i]};
		EXPECT_EQ(codeOf(parsePackIndex(serializePackIndex(index))), errc::kCorrupt) << i;
	}
}

// FORMAT.md ("Packs and pack indexes"): each index entry carries the
// blob's flags (bit0 zstd); the writer once always wrote 0.
TEST_F(ChunkTest, IndexEntryFlagsMatchTheBlob)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto codec = store->newCodec();
	auto ids = putAll(*store, *codec, {compressibleData(50000, 80), randomData(50000, 81)});
	ASSERT_EQ(ids.size(), 2u);

	auto packs = filesEndingWith(storeDir() / "packs", ".pack");
	ASSERT_EQ(packs.size(), 1u);
	fs::path idx = packs[0];
	idx.replace_extension(".idx");
	auto sealed = readFile(idx);
	ASSERT_TRUE(sealed);
	auto plain = openObject(ObjectType::PackIndex, store->domain().encKey, packs[0].stem().string(), *sealed);
	ASSERT_TRUE(plain) << describe(plain);
	constexpr size_t kEntry = 32 + 1 + 1 + 2 + 8 + 4 + 4;
	ASSERT_EQ(plain->size(), 20 + 2 * kEntry);
	auto pack = readFile(packs[0]);
	ASSERT_TRUE(pack);
	for (size_t i = 0; i < 2; i++) {
		const uint8_t *e = plain->data() + 20 + i * kEntry;
		uint64_t offset = getLe64(e + 36);
		auto h = parseBlobHeader(std::span(*pack).subspan(offset));
		ASSERT_TRUE(h);
		EXPECT_EQ(e[32], uint8_t(h->type)) << i;
		EXPECT_EQ(e[33], h->flags) << "flags of entry " << i;
		EXPECT_EQ(e[34], 0) << i;
		EXPECT_EQ(e[35], 0) << i;
	}
}

} // namespace
} // namespace virtsnap::store::test
