// The compressors a store may choose (FORMAT.md "Chunks", config.json
// "compression"), the skip of chunks that look random, and chunks as the
// format's first writers made them, which every reader still opens.
#include <lz4.h>
#include <zstd.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "store/chunk_codec.h"
#include "store/compressibility.h"
#include "store/compression.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

constexpr size_t kCodecChunk = Store::kDefaultChunkSize;

KeyDomain codecTestDomain()
{
	auto d = KeyDomain::generate();
	EXPECT_TRUE(d) << describe(d);
	return d ? std::move(*d) : KeyDomain{};
}

Compression compressionOf(const std::string &name)
{
	auto c = Compression::parse(name);
	EXPECT_TRUE(c) << name << ": " << describe(c);
	return c.value_or(Compression{});
}

// Uniform over `symbols` byte values: log2(symbols) bits a byte and no
// repeats, so only an entropy coder gains anything.
Bytes fewSymbols(size_t n, unsigned symbols, uint64_t seed)
{
	std::mt19937_64 rng(seed);
	Bytes out(n);
	for (uint8_t &b : out)
		b = uint8_t(rng() % symbols);
	return out;
}

// The size zstd -1 makes of `data` by itself, as the codec did for every
// chunk before the skip.
size_t zstd1Size(const Bytes &data)
{
	Bytes out(ZSTD_compressBound(data.size()));
	size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 1);
	EXPECT_FALSE(ZSTD_isError(n));
	return n;
}

std::string readText(const fs::path &p)
{
	std::ifstream in(p);
	std::stringstream s;
	s << in.rdbuf();
	return s.str();
}

void writeText(const fs::path &p, const std::string &text)
{
	std::ofstream out(p, std::ios::trunc);
	out << text;
}

TEST(CompressionTest, ParsesTheNamesInitAccepts)
{
	struct Case {
		std::string text;
		Compression::Method method;
		int level;
		std::string name;
	};
	for (const Case &c : std::vector<Case>{{"zstd:1", Compression::Method::Zstd, 1, "zstd:1"},
					       {"zstd", Compression::Method::Zstd, 1, "zstd:1"},
					       {"zstd:-3", Compression::Method::Zstd, -3, "zstd:-3"},
					       {"zstd:19", Compression::Method::Zstd, 19, "zstd:19"},
					       {"zstd:-10", Compression::Method::Zstd, -10, "zstd:-10"},
					       {"lz4", Compression::Method::Lz4, 0, "lz4"},
					       {"none", Compression::Method::None, 0, "none"}}) {
		auto parsed = Compression::parse(c.text);
		ASSERT_TRUE(parsed) << c.text << ": " << describe(parsed);
		EXPECT_EQ(parsed->method, c.method) << c.text;
		EXPECT_EQ(parsed->level, c.level) << c.text;
		EXPECT_EQ(parsed->name(), c.name) << c.text;
		EXPECT_EQ(Compression::parse(parsed->name()).value_or(Compression{}), *parsed) << c.text;
	}
	for (std::string bad : {"", "zstd:", "zstd:0", "zstd:20", "zstd:-11", "zstd:1x", "zstd:+1", "zstd:x", "gzip",
				"LZ4", "lz4:1", "none "}) {
		auto parsed = Compression::parse(bad);
		ASSERT_FALSE(parsed) << "'" << bad << "'";
		EXPECT_EQ(parsed.error().code, errc::kInvalidParameterValue);
		EXPECT_NE(parsed.error().message.find("'" + bad + "'"), std::string::npos) << parsed.error().message;
	}
}

TEST(CompressibilityTest, RandomBytesAreNotWorthCompressing)
{
	for (uint64_t seed = 1; seed <= 20; seed++)
		EXPECT_FALSE(worthCompressing(randomData(kCodecChunk, seed))) << seed;
	EXPECT_FALSE(worthCompressing(randomData(4096, 21)));
	EXPECT_FALSE(worthCompressing(randomData(4u << 20, 22)));
	// 200 symbols: 7.6 bits a byte. zstd saves a few percent on it, which
	// is not worth a compressor pass on every such chunk.
	EXPECT_FALSE(worthCompressing(fewSymbols(kCodecChunk, 200, 23)));
}

TEST(CompressibilityTest, AnythingWithStructureIsWorthCompressing)
{
	EXPECT_TRUE(worthCompressing(compressibleData(kCodecChunk, 1)));
	EXPECT_TRUE(worthCompressing(Bytes(kCodecChunk, 0)));
	EXPECT_TRUE(worthCompressing(fewSymbols(kCodecChunk, 16, 2)));
	EXPECT_TRUE(worthCompressing(fewSymbols(kCodecChunk, 100, 3)));

	// Random bytes, but a 4 KiB block of them written 16 times: a byte
	// histogram looks random, zstd shrinks it 10-fold.
	Bytes block = randomData(4096, 4), repeated;
	for (int i = 0; i < 16; i++)
		repeated.insert(repeated.end(), block.begin(), block.end());
	EXPECT_LT(zstd1Size(repeated), repeated.size() / 10);
	EXPECT_TRUE(worthCompressing(repeated));

	// Half text, half random: the text half pays.
	Bytes half = compressibleData(kCodecChunk / 2, 5);
	Bytes rnd = randomData(kCodecChunk / 2, 6);
	half.insert(half.end(), rnd.begin(), rnd.end());
	EXPECT_TRUE(worthCompressing(half));

	// Too small to sample: always tried.
	EXPECT_TRUE(worthCompressing(randomData(4095, 7)));
	EXPECT_TRUE(worthCompressing(randomData(1, 8)));
	EXPECT_TRUE(worthCompressing(Bytes{}));
}

// Random bytes where a quarter of each 256 is a copy of the quarter before
// it, out of the guess's samples' way: the guess's blind spot by design,
// which zstd would shrink by a fifth.
Bytes hiddenRepeats(size_t n, uint64_t seed)
{
	Bytes out = randomData(n, seed);
	for (size_t b = 0; b + 256 <= n; b += 256)
		std::memcpy(out.data() + b + 128, out.data() + b + 64, 64);
	return out;
}

// A chunk the guess calls random is stored as it is, without a compressor
// pass, even where the compressor would have saved something.
TEST(ChunkCodecCompressionTest, RandomLookingChunkIsStoredRaw)
{
	KeyDomain d = codecTestDomain();
	ChunkCodec codec(d, compressionOf("zstd:1"));
	Bytes data = hiddenRepeats(kCodecChunk, 9);
	ASSERT_FALSE(worthCompressing(data));
	ASSERT_LT(zstd1Size(data), data.size() * 9 / 10) << "zstd must shrink it, or this test shows nothing";

	Bytes blob;
	ASSERT_TRUE(codec.encode(codec.idOf(data), ChunkType::Data, data, blob));
	auto h = parseBlobHeader(blob);
	ASSERT_TRUE(h) << describe(h);
	EXPECT_EQ(h->flags, 0);
	EXPECT_EQ(h->bodyLength, data.size());
	auto back = codec.decode(codec.idOf(data), blob);
	ASSERT_TRUE(back) << describe(back);
	EXPECT_EQ(*back, data);
}

TEST(ChunkCodecCompressionTest, EveryCodecDecodesEveryMethod)
{
	KeyDomain d = codecTestDomain();
	std::vector<std::string> names = {"zstd:1", "zstd:-3", "zstd:9", "lz4", "none"};
	std::vector<std::unique_ptr<ChunkCodec>> codecs;
	for (const std::string &n : names)
		codecs.push_back(std::make_unique<ChunkCodec>(d, compressionOf(n)));
	std::vector<Bytes> chunks = {compressibleData(kCodecChunk, 10), randomData(kCodecChunk, 11),
				     compressibleData(5000, 12), randomData(3, 13), fewSymbols(kCodecChunk, 16, 14)};
	for (size_t w = 0; w < codecs.size(); w++) {
		for (const Bytes &c : chunks) {
			ChunkId id = codecs[w]->idOf(c);
			Bytes blob;
			ASSERT_TRUE(codecs[w]->encode(id, ChunkType::Data, c, blob)) << names[w];
			auto h = parseBlobHeader(blob);
			ASSERT_TRUE(h) << describe(h);
			if (names[w] == "none") {
				EXPECT_EQ(h->flags, 0);
			}
			for (size_t r = 0; r < codecs.size(); r++) {
				auto back = codecs[r]->decode(id, blob);
				ASSERT_TRUE(back) << names[w] << " read by " << names[r] << ": " << describe(back);
				EXPECT_EQ(*back, c) << names[w] << " read by " << names[r];
			}
		}
	}
}

// A blob made from FORMAT.md alone, with zstd and OpenSSL directly, as
// virtsnap wrote every chunk before the store had a choice: still opens.
Bytes handMadeBlob(const KeyDomain &d, const Bytes &plain, bool zstd, uint8_t flags)
{
	Bytes body = plain;
	if (zstd) {
		body.resize(ZSTD_compressBound(plain.size()));
		size_t n = ZSTD_compress(body.data(), body.size(), plain.data(), plain.size(), 1);
		EXPECT_FALSE(ZSTD_isError(n));
		body.resize(n);
	}
	crypto::Digest id = crypto::Hmac(d.idKey).digest(plain);
	Bytes header = {'V', 'S', 'C', 'K', 1, flags, 0, 0};
	header.insert(header.end(), d.id.begin(), d.id.end());
	header.insert(header.end(), id.begin(), id.end());
	for (uint32_t v : {uint32_t(plain.size()), uint32_t(body.size())})
		for (int i = 0; i < 4; i++)
			header.push_back(uint8_t(v >> (8 * i)));
	crypto::Nonce nonce{};
	EXPECT_TRUE(crypto::randomBytes(nonce));
	header.insert(header.end(), nonce.begin(), nonce.end());
	EXPECT_EQ(header.size(), kBlobHeaderSize);
	Bytes blob = header;
	EXPECT_TRUE(crypto::Aead(d.encKey).seal(nonce, header, body, blob));
	return blob;
}

TEST(ChunkCodecCompressionTest, ChunksOfTheFirstFormatStillDecode)
{
	KeyDomain d = codecTestDomain();
	Bytes text = compressibleData(kCodecChunk, 20), rnd = randomData(kCodecChunk, 21);
	Bytes zstdBlob = handMadeBlob(d, text, true, 1), rawBlob = handMadeBlob(d, rnd, false, 0);
	for (std::string n : {"zstd:1", "zstd:-3", "lz4", "none"}) {
		ChunkCodec codec(d, compressionOf(n));
		auto a = codec.decode(codec.idOf(text), zstdBlob);
		ASSERT_TRUE(a) << n << ": " << describe(a);
		EXPECT_EQ(*a, text) << n;
		auto b = codec.decode(codec.idOf(rnd), rawBlob);
		ASSERT_TRUE(b) << n << ": " << describe(b);
		EXPECT_EQ(*b, rnd) << n;
	}
	// Flags no writer sets are damage, reported before anything is opened.
	Bytes odd = handMadeBlob(d, text, true, 4);
	ChunkCodec codec(d);
	auto r = codec.decode(codec.idOf(text), odd);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
	EXPECT_NE(r.error().message.find("flags"), std::string::npos) << r.error().message;
}

class CodecStoreTest : public StoreDirTest
{
protected:
	std::unique_ptr<Store> initWith(const fs::path &dir, const std::string &compression)
	{
		bool created = false;
		auto r = Store::init(dir, keyFile(), kCodecChunk, &created, compressionOf(compression));
		EXPECT_TRUE(r) << describe(r);
		return r ? openOrNull(dir, keyFile()) : nullptr;
	}

	// The flags of the blob `id` as its pack holds it.
	int storedFlags(Store &store, const ChunkId &id)
	{
		auto ref = store.findBlob(id);
		EXPECT_TRUE(ref);
		if (!ref)
			return -1;
		Bytes header(kBlobHeaderSize);
		auto read = store.readPackBytes(ref->pack, ref->offset, header);
		EXPECT_TRUE(read) << describe(read);
		auto h = parseBlobHeader(header);
		EXPECT_TRUE(h) << describe(h);
		return h ? h->flags : -1;
	}
};

TEST_F(CodecStoreTest, EachCompressionRoundTripsAndIsRecorded)
{
	struct Case {
		std::string name;
		int textFlags;
		int version;
	};
	// Every store made now is format version 3 (FORMAT.md), lz4 or not.
	for (const Case &c : std::vector<Case>{{"zstd:1", kFlagZstd, 3},
					       {"zstd:-3", kFlagZstd, 3},
					       {"lz4", kFlagLz4, 3},
					       {"none", 0, 3}}) {
		SCOPED_TRACE(c.name);
		fs::path dir = root_ / ("store-" + c.name);
		auto store = initWith(dir, c.name);
		ASSERT_TRUE(store);
		EXPECT_EQ(store->compression().name(), c.name);
		std::string config = readText(dir / "config.json");
		EXPECT_TRUE(std::regex_search(config, std::regex("\"compression\":\\s*\"" + c.name + "\"")))
			<< config;
		EXPECT_TRUE(std::regex_search(config, std::regex("\"version\":\\s*" + std::to_string(c.version))))
			<< config;

		auto codec = store->newCodec();
		std::vector<Bytes> chunks = {compressibleData(kCodecChunk, 30), randomData(kCodecChunk, 31),
					     compressibleData(700, 32), randomData(5, 33)};
		std::vector<ChunkId> ids;
		auto writer = store->newWriter();
		for (const Bytes &b : chunks) {
			auto id = writer->put(*codec, b, ChunkType::Data);
			ASSERT_TRUE(id) << describe(id);
			ids.push_back(*id);
		}
		ASSERT_TRUE(writer->commit());
		EXPECT_EQ(storedFlags(*store, ids[0]), c.textFlags);
		EXPECT_EQ(storedFlags(*store, ids[1]), 0);
		if (c.textFlags) {
			EXPECT_LT(store->locate(ids[0])->length, kCodecChunk / 4);
		}

		// Read back by a Store that learns everything from the objects.
		auto reopened = openOrNull(dir, keyFile());
		ASSERT_TRUE(reopened);
		EXPECT_EQ(reopened->compression().name(), c.name);
		auto reader = reopened->newCodec();
		for (size_t i = 0; i < chunks.size(); i++) {
			auto back = reopened->readChunk(*reader, ids[i]);
			ASSERT_TRUE(back) << i << ": " << describe(back);
			EXPECT_EQ(*back, chunks[i]) << i;
		}
	}
}

// config.json without "compression" is a store made before the choice:
// zstd -1, as then. One naming a compressor unknown here, or a later
// format version, is refused at open with a line that says so.
TEST_F(CodecStoreTest, ConfigFromBeforeTheChoiceAndUnknownOnes)
{
	auto store = initAndOpen(kCodecChunk);
	ASSERT_TRUE(store);
	store.reset();
	const fs::path config = storeDir() / "config.json";
	const std::string original = readText(config);
	std::regex field("\"compression\":\\s*\"zstd:1\"\\s*,");
	ASSERT_TRUE(std::regex_search(original, field)) << original;

	writeText(config, std::regex_replace(original, field, ""));
	auto old = openOrNull(storeDir(), keyFile());
	ASSERT_TRUE(old);
	EXPECT_EQ(old->compression(), (Compression{Compression::Method::Zstd, 1}));
	old.reset();

	writeText(config, std::regex_replace(original, std::regex("zstd:1"), "brotli"));
	auto unknown = Store::open(storeDir(), keyFile());
	ASSERT_FALSE(unknown);
	EXPECT_EQ(unknown.error().code, errc::kCorrupt);
	EXPECT_NE(unknown.error().message.find("'brotli'"), std::string::npos) << unknown.error().message;

	writeText(config, std::regex_replace(original, std::regex("\"version\":\\s*3"), "\"version\":4"));
	auto later = Store::open(storeDir(), keyFile());
	ASSERT_FALSE(later);
	EXPECT_NE(later.error().message.find("format version 4"), std::string::npos) << later.error().message;
}

} // namespace
} // namespace virtsnap::store::test
