// Manifests: every field survives serialize/parse and a trip through the
// store; parse refuses what a reader could misinterpret; put/get/list/
// delete keep their promises (no silent overwrite, NotFound, ordering).
#include <algorithm>
#include <regex>

#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "json/json.h"
#include "store/manifest.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

ChunkId idFrom(uint64_t seed)
{
	ChunkId id;
	Bytes b = randomData(id.size(), seed);
	std::copy(b.begin(), b.end(), id.begin());
	return id;
}

// A manifest with every field set to something distinctive, and an index
// that covers the volume: 1 TiB + 512 bytes at 64 KiB chunks is 2^24 + 1
// slots, 16385 pages of 1024.
Manifest fullManifest(const std::string &snapshotId)
{
	Manifest m;
	m.snapshotId = snapshotId;
	m.volumeId = volumeIdFor("uuid:5f0c6e8a-0d7e-4b0e-9a55-0123456789ab", "vda");
	m.volume = {"uuid:5f0c6e8a-0d7e-4b0e-9a55-0123456789ab", "web-01 \"prod\"", "vda", "qcow2"};
	m.parentSnapshotId = "snap-0123456789abcdef0";
	m.startTime = "2026-11-23T02:41:07.123Z";
	m.completionTime = "2026-11-23T02:43:59.999Z";
	m.volumeSize = (1ull << 40) + 512;
	m.chunkSize = 65536;
	m.pageEntries = 1024;
	uint64_t slots = (m.volumeSize + m.chunkSize - 1) / m.chunkSize;
	uint64_t pages = (slots + m.pageEntries - 1) / m.pageEntries;
	for (uint64_t i = 0; i < pages; i++)
		m.indexPages.push_back(i % 3 == 0 ? kZeroChunk : idFrom(i));
	m.description = "nightly \"full\" backup\nline two\ttab \\ backslash — ünïcødé ✓";
	m.name = "nom d'instantané";
	m.tags = {{"Name", "web \"01\""}, {"clé", "värde 🦀"}, {"empty", ""}, {"Name", "duplicate key kept"}};
	m.consistency = "application";
	m.captureMode = "incremental";
	m.captureReason = "parent's bitmap is \"stale\"";
	m.freezeMillis = 1234;
	m.quiesceNote = "guest agent \"timed out\" after 10 s";
	m.snapshotSetId = "snap-0fedcba9876543210";
	m.bitmapName = "virtsnap-snap-0123456789abcdef1";
	m.productCodes = {{"8l7pawpyjfh0u9p6aefa8ngmg", "marketplace"}, {"abc123", "devpay"}};
	m.encrypted = true;
	m.kmsKeyId = "0123456789abcdef";
	m.stats = {(1ull << 40) + 7, (1ull << 33) + 5, 123456789, 987654321, 55555, (1ull << 36) + 3};
	m.source = {"snap-0123456789abcdef2", "0123456789abcdef0123456789abcdef", "s3://bucket/prefix?endpoint=http://rgw"};
	return m;
}

void expectSame(const Manifest &a, const Manifest &b)
{
	EXPECT_EQ(a.snapshotId, b.snapshotId);
	EXPECT_EQ(a.volumeId, b.volumeId);
	EXPECT_EQ(a.volume.instanceKey, b.volume.instanceKey);
	EXPECT_EQ(a.volume.instanceName, b.volume.instanceName);
	EXPECT_EQ(a.volume.diskId, b.volume.diskId);
	EXPECT_EQ(a.volume.format, b.volume.format);
	EXPECT_EQ(a.parentSnapshotId, b.parentSnapshotId);
	EXPECT_EQ(a.startTime, b.startTime);
	EXPECT_EQ(a.completionTime, b.completionTime);
	EXPECT_EQ(a.volumeSize, b.volumeSize);
	EXPECT_EQ(a.chunkSize, b.chunkSize);
	EXPECT_EQ(a.pageEntries, b.pageEntries);
	EXPECT_TRUE(a.indexPages == b.indexPages) << a.indexPages.size() << " vs " << b.indexPages.size();
	EXPECT_EQ(a.description, b.description);
	EXPECT_EQ(a.name, b.name);
	EXPECT_EQ(a.tags, b.tags);
	EXPECT_EQ(a.consistency, b.consistency);
	EXPECT_EQ(a.captureMode, b.captureMode);
	EXPECT_EQ(a.captureReason, b.captureReason);
	EXPECT_EQ(a.freezeMillis, b.freezeMillis);
	EXPECT_EQ(a.quiesceNote, b.quiesceNote);
	EXPECT_EQ(a.snapshotSetId, b.snapshotSetId);
	EXPECT_EQ(a.bitmapName, b.bitmapName);
	EXPECT_EQ(a.productCodes, b.productCodes);
	EXPECT_EQ(a.encrypted, b.encrypted);
	EXPECT_EQ(a.kmsKeyId, b.kmsKeyId);
	EXPECT_EQ(a.stats.bytesRead, b.stats.bytesRead);
	EXPECT_EQ(a.stats.bytesAdded, b.stats.bytesAdded);
	EXPECT_EQ(a.stats.chunksNew, b.stats.chunksNew);
	EXPECT_EQ(a.stats.chunksReused, b.stats.chunksReused);
	EXPECT_EQ(a.stats.zeroChunks, b.stats.zeroChunks);
	EXPECT_EQ(a.stats.bytesTransferred, b.stats.bytesTransferred);
	EXPECT_EQ(a.source.snapshotId, b.source.snapshotId);
	EXPECT_EQ(a.source.storeId, b.source.storeId);
	EXPECT_EQ(a.source.storeUrl, b.source.storeUrl);
}

// A small valid manifest for the store tests.
Manifest smallManifest(const std::string &id, const std::string &startTime)
{
	Manifest m;
	m.snapshotId = id;
	m.volumeId = volumeIdFor("name:vm", "vda");
	m.startTime = startTime;
	m.volumeSize = 3 * 65536 + 1;
	m.chunkSize = 65536;
	m.pageEntries = 1024;
	m.indexPages = {idFrom(std::hash<std::string>{}(id))};
	m.description = "snapshot " + id;
	return m;
}

// Serializes `m`, applies `edit` to the JSON, and parses the result.
Result<Manifest> parseEdited(const Manifest &m, const std::function<void(virtsnap::Json &)> &edit)
{
	auto j = virtsnap::Json::parse(serializeManifest(m));
	EXPECT_TRUE(j.has_value());
	if (!j)
		return fail(errc::kInternal, "test: serialized manifest is not JSON");
	edit(*j);
	return parseManifest(j->dump());
}

TEST(ManifestTest, SerializeParseRoundTripsEveryField)
{
	Manifest m = fullManifest("snap-00112233445566778");
	auto back = parseManifest(serializeManifest(m));
	ASSERT_TRUE(back) << describe(back);
	expectSame(m, *back);
	EXPECT_EQ(back->indexPages.size(), 16385u);
}

TEST(ManifestTest, DefaultsRoundTrip)
{
	// No freeze is -1, a full snapshot has no parent: both must survive.
	Manifest m = smallManifest("snap-00000000000000001", "2026-01-01T00:00:00.000Z");
	ASSERT_EQ(m.freezeMillis, -1);
	auto back = parseManifest(serializeManifest(m));
	ASSERT_TRUE(back) << describe(back);
	expectSame(m, *back);
}

// Manifests written before product codes existed have no such member.
TEST(ManifestTest, AManifestWithoutProductCodesHasNone)
{
	std::string text = serializeManifest(fullManifest("snap-00112233445566778"));
	const std::string member = "\"product_codes\":";
	size_t at = text.find(member);
	ASSERT_NE(at, std::string::npos) << text.substr(0, 200);
	text.replace(at, member.size(), "\"unknown_member\":");
	auto back = parseManifest(text);
	ASSERT_TRUE(back) << describe(back);
	EXPECT_TRUE(back->productCodes.empty());
}

// Manifests written before encrypted volumes existed, or of an unencrypted
// volume, have no such member: not encrypted.
TEST(ManifestTest, AManifestWithoutEncryptedIsNotEncrypted)
{
	Manifest m = fullManifest("snap-00112233445566778");
	std::string text = serializeManifest(m);
	ASSERT_NE(text.find("\"kms_key_id\":\"0123456789abcdef\""), std::string::npos);
	m.encrypted = false;
	m.kmsKeyId = "ignored";
	text = serializeManifest(m);
	EXPECT_EQ(text.find("encrypted"), std::string::npos);
	auto back = parseManifest(text);
	ASSERT_TRUE(back) << describe(back);
	EXPECT_FALSE(back->encrypted);
	EXPECT_EQ(back->kmsKeyId, "");
}

TEST(ManifestTest, EmptyVolumeHasNoPages)
{
	Manifest m = smallManifest("snap-00000000000000002", "t");
	m.volumeSize = 0;
	m.indexPages.clear();
	auto back = parseManifest(serializeManifest(m));
	ASSERT_TRUE(back) << describe(back);
	EXPECT_TRUE(back->indexPages.empty());
}

TEST(ManifestTest, ParseRejectsIndexNotCoveringTheVolume)
{
	Manifest m = smallManifest("snap-00000000000000003", "t");
	// One page covers 1024 slots; the volume needs one page.
	m.indexPages.push_back(idFrom(1));
	auto tooMany = parseManifest(serializeManifest(m));
	ASSERT_FALSE(tooMany);
	EXPECT_EQ(tooMany.error().code, errc::kCorrupt);

	m.indexPages.clear();
	auto none = parseManifest(serializeManifest(m));
	ASSERT_FALSE(none);
	EXPECT_EQ(none.error().code, errc::kCorrupt);

	// A volume one slot past a page boundary needs a second page.
	Manifest edge = smallManifest("snap-00000000000000004", "t");
	edge.volumeSize = 1024ull * 65536 + 1;
	auto short1 = parseManifest(serializeManifest(edge));
	ASSERT_FALSE(short1);
	EXPECT_EQ(short1.error().code, errc::kCorrupt);
	edge.indexPages.push_back(kZeroChunk);
	EXPECT_TRUE(parseManifest(serializeManifest(edge)));

	// The same check against a volume size edited after the fact.
	auto grown = parseEdited(smallManifest("snap-00000000000000005", "t"), [](virtsnap::Json &j) {
		j.set("volume_size", virtsnap::Json::integer(int64_t(2000) * 65536));
	});
	ASSERT_FALSE(grown);
	EXPECT_EQ(grown.error().code, errc::kCorrupt);
}

TEST(ManifestTest, ParseRejectsUnknownVersion)
{
	Manifest m = smallManifest("snap-00000000000000006", "t");
	for (int64_t v : {0, 3, 99, -1}) {
		auto r = parseEdited(m, [v](virtsnap::Json &j) { j.set("version", virtsnap::Json::integer(v)); });
		ASSERT_FALSE(r) << v;
		EXPECT_EQ(r.error().code, errc::kCorrupt) << v;
	}
	auto missing = parseEdited(m, [](virtsnap::Json &j) { j.set("version", virtsnap::Json()); });
	EXPECT_FALSE(missing);
	// The unedited manifest parses: the version was the reason.
	EXPECT_TRUE(parseEdited(m, [](virtsnap::Json &) {}));
}

TEST(ManifestTest, ParseRejectsMalformedInput)
{
	for (std::string_view text : {"", "[]", "\"x\"", "{", "{\"version\":1}", "null"}) {
		auto r = parseManifest(text);
		ASSERT_FALSE(r) << text;
		EXPECT_EQ(r.error().code, errc::kCorrupt) << text;
	}
	Manifest m = smallManifest("snap-00000000000000007", "t");
	for (const char *bad : {"zz", "00", "0123", ""}) {
		auto r = parseEdited(m, [bad](virtsnap::Json &j) {
			virtsnap::Json pages = virtsnap::Json::array();
			pages.append(virtsnap::Json::string(bad));
			j.set("index_pages", pages);
		});
		EXPECT_FALSE(r) << bad;
	}
	auto upper = parseEdited(m, [&](virtsnap::Json &j) {
		std::string hex = idHex(m.indexPages[0]);
		for (char &c : hex)
			c = char(std::toupper((unsigned char)c));
		virtsnap::Json pages = virtsnap::Json::array();
		pages.append(virtsnap::Json::string(hex));
		j.set("index_pages", pages);
	});
	EXPECT_FALSE(upper);
	for (const char *field : {"snapshot_id", "chunk_size", "page_entries"}) {
		auto r = parseEdited(m, [field](virtsnap::Json &j) { j.set(field, virtsnap::Json()); });
		EXPECT_FALSE(r) << field;
	}
}

// Version 2: a run of zero pages is its length. A 16 TiB disk holding data
// in two places was 17 MB of manifest, every page 64 hex zeros.
TEST(ManifestFormat, ZeroPagesAreWrittenAsRunsAndReadBack)
{
	Manifest m = smallManifest("snap-00000000000000010", "t");
	m.volumeSize = 16ull << 40;
	m.indexPages.assign(262144, kZeroChunk);
	m.indexPages[0] = idFrom(1);
	m.indexPages[100000] = idFrom(2);
	m.indexPages[262143] = idFrom(3);
	std::string text = serializeManifest(m, true);
	EXPECT_LT(text.size(), 2000u);
	auto j = virtsnap::Json::parse(text);
	ASSERT_TRUE(j);
	EXPECT_EQ(j->getInt("version"), 2);
	virtsnap::Json pages = j->get("index_pages");
	ASSERT_EQ(pages.size(), 5u);
	EXPECT_EQ(pages.at(1).asInt(), 99999);
	EXPECT_EQ(pages.at(3).asInt(), 162142);
	auto back = parseManifest(text);
	ASSERT_TRUE(back) << describe(back);
	expectSame(m, *back);
}

// Version 1, which readers before version 2 read: what is asked without
// runs (records that carry a manifest), an index without a zero page, and
// one too large for runs (their cost would not be bounded by the text).
TEST(ManifestFormat, AnIndexWithoutRunsIsWrittenAsVersion1)
{
	auto versionOf = [](const std::string &text) {
		auto j = virtsnap::Json::parse(text);
		return j ? j->getInt("version").value_or(0) : 0;
	};
	Manifest sparse = smallManifest("snap-00000000000000010", "t");
	sparse.volumeSize = 1ull << 40;
	sparse.indexPages.assign(16384, kZeroChunk);
	sparse.indexPages[5] = idFrom(5);
	EXPECT_EQ(versionOf(serializeManifest(sparse)), 1);
	EXPECT_EQ(versionOf(serializeManifest(sparse, true)), 2);

	Manifest dense = smallManifest("snap-00000000000000011", "t");
	EXPECT_EQ(versionOf(serializeManifest(dense, true)), 1);

	// Not parsed back: 70 MB of JSON, and version 1 parsing is tested above.
	Manifest huge = smallManifest("snap-00000000000000012", "t");
	huge.volumeSize = (64ull << 40) + 65536; // one page past 2^20
	huge.indexPages.assign((1u << 20) + 1, kZeroChunk);
	std::string text = serializeManifest(huge, true);
	EXPECT_EQ(text.find("\"version\":2"), std::string::npos);
	EXPECT_NE(text.find("\"version\":1"), std::string::npos) << text.substr(0, 40);
}

TEST(ManifestFormat, RunsThatDoNotCoverTheVolumeAreCorrupt)
{
	Manifest m = smallManifest("snap-00000000000000013", "t");
	m.volumeSize = 4ull << 30; // 64 pages
	m.indexPages.assign(64, kZeroChunk);
	m.indexPages[10] = idFrom(7);
	auto withPages = [&](std::vector<virtsnap::Json> elements, int64_t version = 2) {
		return parseEdited(m, [&](virtsnap::Json &j) {
			virtsnap::Json pages = virtsnap::Json::array();
			for (virtsnap::Json &e : elements)
				pages.append(e);
			j.set("index_pages", pages);
			j.set("version", virtsnap::Json::integer(version));
		});
	};
	auto run = [](int64_t n) { return virtsnap::Json::integer(n); };
	auto page = virtsnap::Json::string(idHex(idFrom(7)));
	EXPECT_TRUE(withPages({run(10), page, run(53)}));
	EXPECT_EQ(codeOf(withPages({run(10), page, run(52)})), errc::kCorrupt);		 // short
	EXPECT_EQ(codeOf(withPages({run(10), page, run(54)})), errc::kCorrupt);		 // long
	EXPECT_EQ(codeOf(withPages({run(64), page})), errc::kCorrupt);			 // a page past the end
	EXPECT_EQ(codeOf(withPages({run(10), page, run(0), run(53)})), errc::kCorrupt);	 // empty run
	EXPECT_EQ(codeOf(withPages({run(-1), run(11), page, run(53)})), errc::kCorrupt); // negative
	EXPECT_EQ(codeOf(withPages({run(INT64_MAX), page})), errc::kCorrupt);
	EXPECT_EQ(codeOf(withPages({run(10), page, run(53)}, 1)), errc::kCorrupt); // no runs in version 1
	// A run may not claim more pages than runs are written for, whatever
	// the volume size says.
	auto vast = parseEdited(m, [&](virtsnap::Json &j) {
		virtsnap::Json pages = virtsnap::Json::array();
		pages.append(run(int64_t(1) << 36)); // every page of that volume
		j.set("index_pages", pages);
		j.set("volume_size", virtsnap::Json::integer(int64_t(1) << 62));
	});
	EXPECT_EQ(codeOf(vast), errc::kCorrupt);
}

// Found with tests/fuzz (snapshot-index): any chunk and page size parsed, and
// SnapshotIndex then allocated an id per slot, 64 GiB for a manifest of a
// few hundred bytes (2^62 bytes at 2^31-byte chunks, one page of 2^31 ids).
TEST(ManifestFormat, AGeometryNoStoreHasIsCorrupt)
{
	Manifest m = fullManifest("snap-0abcdef0123456789");
	auto geometry = [&](int64_t volumeSize, int64_t chunkSize, int64_t pageEntries) {
		return parseEdited(m, [&](virtsnap::Json &j) {
			uint64_t slots = (uint64_t(volumeSize) + uint64_t(chunkSize) - 1) / uint64_t(chunkSize);
			virtsnap::Json pages = virtsnap::Json::array();
			for (uint64_t i = 0; i < (slots + uint64_t(pageEntries) - 1) / uint64_t(pageEntries); i++)
				pages.append(virtsnap::Json::string(idHex(kZeroChunk)));
			j.set("volume_size", virtsnap::Json::integer(volumeSize));
			j.set("chunk_size", virtsnap::Json::integer(chunkSize));
			j.set("page_entries", virtsnap::Json::integer(pageEntries));
			j.set("index_pages", pages);
		});
	};
	EXPECT_TRUE(geometry(1 << 30, 65536, 1024));
	EXPECT_EQ(codeOf(geometry(int64_t(1) << 62, int64_t(1) << 31, int64_t(1) << 31)), errc::kCorrupt);
	EXPECT_EQ(codeOf(geometry(1 << 20, 1, 1 << 20)), errc::kCorrupt);
	EXPECT_EQ(codeOf(geometry(1 << 20, 65536 + 1, 1024)), errc::kCorrupt);
	EXPECT_EQ(codeOf(geometry(1 << 30, 32u << 20, 1024)), errc::kCorrupt);
	EXPECT_EQ(codeOf(geometry(1 << 30, 65536, 2048)), errc::kCorrupt);
}

class StoreManifestTest : public StoreDirTest
{
};

TEST_F(StoreManifestTest, PutGetRoundTripsEveryField)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	Manifest m = fullManifest("snap-0abcdef0123456789");
	ASSERT_TRUE(store->putManifest(m));
	fs::path path = storeDir() / "snapshots" / (m.snapshotId + ".manifest");
	ASSERT_TRUE(fs::is_regular_file(path));
	// Sealed: none of the plaintext is in the file.
	auto raw = readFile(path);
	ASSERT_TRUE(raw);
	std::string rawText(raw->begin(), raw->end());
	EXPECT_EQ(rawText.find("nightly"), std::string::npos);
	EXPECT_EQ(rawText.find(m.volumeId), std::string::npos);

	auto got = store->getManifest(m.snapshotId);
	ASSERT_TRUE(got) << describe(got);
	expectSame(m, *got);

	auto reopened = Store::open(storeDir(), keyFile());
	ASSERT_TRUE(reopened);
	auto again = (*reopened)->getManifest(m.snapshotId);
	ASSERT_TRUE(again) << describe(again);
	expectSame(m, *again);
}

// A store made now (format version 3) writes its manifests' zero pages as
// runs; one made before (1 or 2, here edited back to 1) writes version 1,
// which the readers it had can still read. Either reads both.
TEST_F(StoreManifestTest, OnlyAStoreOfFormatVersion3WritesZeroRuns)
{
	Manifest m = smallManifest("snap-00000000000000020", "t");
	m.volumeSize = 16ull << 40;
	m.indexPages.assign(262144, kZeroChunk);
	m.indexPages[7] = idFrom(7);
	auto sealedSize = [&](Store &store) {
		auto raw = readFile(storeDir() / "snapshots" / (m.snapshotId + ".manifest"));
		EXPECT_TRUE(raw);
		auto got = store.getManifest(m.snapshotId);
		EXPECT_TRUE(got) << describe(got);
		if (got) {
			EXPECT_TRUE(got->indexPages == m.indexPages);
		}
		return raw ? raw->size() : 0;
	};
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	ASSERT_TRUE(store->putManifest(m));
	EXPECT_LT(sealedSize(*store), 4096u);

	store.reset();
	fs::path config = storeDir() / "config.json";
	auto text = readFile(config);
	ASSERT_TRUE(text);
	std::string edited = std::regex_replace(std::string(text->begin(), text->end()),
						std::regex("\"version\":\\s*3"), "\"version\": 1");
	ASSERT_NE(edited, std::string(text->begin(), text->end()));
	ASSERT_TRUE(writeFileAtomic(config, asBytes(edited)));
	auto old = Store::open(storeDir(), keyFile());
	ASSERT_TRUE(old) << describe(old);
	ASSERT_TRUE((*old)->putManifest(m, true));
	EXPECT_GT(sealedSize(**old), 16u << 20) << "64 hex zeros a page, as readers of version 1 expect";
}

TEST_F(StoreManifestTest, PutRefusesToOverwriteByDefault)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	Manifest first = smallManifest("snap-00000000000000aaa", "2026-01-01T00:00:00.000Z");
	ASSERT_TRUE(store->putManifest(first));
	fs::path path = storeDir() / "snapshots" / (first.snapshotId + ".manifest");
	auto before = readFile(path);
	ASSERT_TRUE(before);

	Manifest second = first;
	second.description = "replacement";
	auto r = store->putManifest(second);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kTargetExists);
	auto after = readFile(path);
	ASSERT_TRUE(after);
	EXPECT_EQ(*before, *after);
	EXPECT_EQ(countTemps(), 0u);
	auto got = store->getManifest(first.snapshotId);
	ASSERT_TRUE(got);
	EXPECT_EQ(got->description, first.description);

	ASSERT_TRUE(store->putManifest(second, true));
	auto replaced = store->getManifest(first.snapshotId);
	ASSERT_TRUE(replaced);
	EXPECT_EQ(replaced->description, "replacement");
	EXPECT_EQ(countTemps(), 0u);
}

TEST_F(StoreManifestTest, MissingSnapshotIsNotFound)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto r = store->getManifest("snap-0123456789abcdef0");
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kSnapshotNotFound);
	EXPECT_NE(r.error().message.find("snap-0123456789abcdef0"), std::string::npos);

	auto del = store->deleteManifest("snap-0123456789abcdef0");
	ASSERT_FALSE(del);
	EXPECT_EQ(del.error().code, errc::kSnapshotNotFound);
}

TEST_F(StoreManifestTest, ListIsSortedByStartTimeAndDeleteRemoves)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	// Put out of order; two share a start time and then sort by id.
	std::vector<std::pair<std::string, std::string>> snaps = {
		{"snap-00000000000000005", "2026-03-01T00:00:00.000Z"},
		{"snap-00000000000000001", "2026-05-01T00:00:00.000Z"},
		{"snap-0000000000000000f", "2026-01-01T00:00:00.000Z"},
		{"snap-0000000000000000c", "2026-02-01T00:00:00.000Z"},
		{"snap-0000000000000000a", "2026-02-01T00:00:00.000Z"},
	};
	for (const auto &[id, t] : snaps)
		ASSERT_TRUE(store->putManifest(smallManifest(id, t)));
	// A crash leftover of a manifest write must not disturb the listing.
	std::string junk = "partial";
	ASSERT_TRUE(writeFileAtomic(storeDir() / "snapshots" / "snap-00000000000000009.manifest.tmp-0011223344556677",
				    asBytes(junk)));

	auto list = store->listManifests();
	ASSERT_TRUE(list) << describe(list);
	std::vector<std::string> order;
	for (const Manifest &m : *list)
		order.push_back(m.snapshotId);
	std::vector<std::string> expected = {"snap-0000000000000000f", "snap-0000000000000000a",
					     "snap-0000000000000000c", "snap-00000000000000005",
					     "snap-00000000000000001"};
	EXPECT_EQ(order, expected);
	for (const Manifest &m : *list)
		EXPECT_EQ(m.description, "snapshot " + m.snapshotId);

	ASSERT_TRUE(store->deleteManifest("snap-0000000000000000a"));
	EXPECT_FALSE(fs::exists(storeDir() / "snapshots" / "snap-0000000000000000a.manifest"));
	auto gone = store->getManifest("snap-0000000000000000a");
	ASSERT_FALSE(gone);
	EXPECT_EQ(gone.error().code, errc::kSnapshotNotFound);
	auto after = store->listManifests();
	ASSERT_TRUE(after);
	ASSERT_EQ(after->size(), 4u);
	for (const Manifest &m : *after)
		EXPECT_NE(m.snapshotId, "snap-0000000000000000a");
	// The others are untouched.
	auto other = store->getManifest("snap-0000000000000000c");
	EXPECT_TRUE(other) << describe(other);
}

TEST_F(StoreManifestTest, EmptyStoreListsNothing)
{
	auto store = initAndOpen();
	ASSERT_TRUE(store);
	auto list = store->listManifests();
	ASSERT_TRUE(list) << describe(list);
	EXPECT_TRUE(list->empty());
}

TEST_F(StoreManifestTest, ManifestOfAnotherStoreDoesNotOpen)
{
	// Same master key, different store: a different domain key.
	auto a = initAndOpenAt(root_ / "a", keyFile());
	auto b = initAndOpenAt(root_ / "b", keyFile());
	ASSERT_TRUE(a && b);
	Manifest m = smallManifest("snap-00000000000000abc", "t");
	ASSERT_TRUE(a->putManifest(m));
	fs::create_directories(root_ / "b" / "snapshots");
	fs::copy_file(root_ / "a" / "snapshots" / (m.snapshotId + ".manifest"),
		      root_ / "b" / "snapshots" / (m.snapshotId + ".manifest"));
	auto r = b->getManifest(m.snapshotId);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
}

} // namespace
} // namespace virtsnap::store::test
