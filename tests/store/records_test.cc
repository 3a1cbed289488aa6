// Sealed records (FORMAT.md layout: records/<kind>/<id>.json.sealed): small
// mutable JSON, replaced atomically, bound to their kind and id.
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

class RecordTest : public OpenStoreTest
{
protected:
	fs::path recordFile(const std::string &kind, const std::string &id) const
	{
		return storeDir() / "records" / kind / (id + ".json.sealed");
	}
};

TEST_F(RecordTest, AbsentRecordReadsAsNothing)
{
	auto r = store_->getRecord("volume-tags", "vol-0123456789abcdef0");
	ASSERT_TRUE(r) << describe(r);
	EXPECT_FALSE(r->has_value());
	auto ids = store_->listRecordIds("volume-tags");
	ASSERT_TRUE(ids) << describe(ids);
	EXPECT_TRUE(ids->empty());
}

TEST_F(RecordTest, PutGetReplaceAndList)
{
	const std::string json = R"({"tags":[{"key":"Name","value":"web \"01\" — ünï 🦀"}]})";
	ASSERT_TRUE(store_->putRecord("volume-tags", "vol-0000000000000000b", json));
	ASSERT_TRUE(store_->putRecord("volume-tags", "vol-0000000000000000a", "{}"));
	ASSERT_TRUE(store_->putRecord("instances", "i-0000000000000000a", R"({"hibernation":true})"));

	auto got = store_->getRecord("volume-tags", "vol-0000000000000000b");
	ASSERT_TRUE(got) << describe(got);
	ASSERT_TRUE(got->has_value());
	EXPECT_EQ(**got, json);
	// Sealed: the plaintext is not in the file.
	auto raw = readFile(recordFile("volume-tags", "vol-0000000000000000b"));
	ASSERT_TRUE(raw);
	EXPECT_EQ(std::string(raw->begin(), raw->end()).find("Name"), std::string::npos);

	auto ids = store_->listRecordIds("volume-tags");
	ASSERT_TRUE(ids);
	EXPECT_EQ(*ids, (std::vector<std::string>{"vol-0000000000000000a", "vol-0000000000000000b"}));
	auto inst = store_->listRecordIds("instances");
	ASSERT_TRUE(inst);
	EXPECT_EQ(*inst, std::vector<std::string>{"i-0000000000000000a"});

	// Replaced in place, without leftovers; a fresh Store reads the new one.
	ASSERT_TRUE(store_->putRecord("volume-tags", "vol-0000000000000000b", R"({"tags":[]})"));
	EXPECT_EQ(countTemps(), 0u);
	auto fresh = openOrNull(storeDir(), keyFile());
	ASSERT_TRUE(fresh);
	auto replaced = fresh->getRecord("volume-tags", "vol-0000000000000000b");
	ASSERT_TRUE(replaced && replaced->has_value()) << describe(replaced);
	EXPECT_EQ(**replaced, R"({"tags":[]})");
}

TEST_F(RecordTest, RecordCopiedOverAnotherFails)
{
	ASSERT_TRUE(store_->putRecord("volume-tags", "vol-0000000000000000a", R"({"a":1})"));
	ASSERT_TRUE(store_->putRecord("volume-tags", "vol-0000000000000000b", R"({"b":2})"));
	ASSERT_TRUE(store_->putRecord("instances", "vol-0000000000000000a", R"({"c":3})"));

	// Another id of the same kind, and the same id under another kind.
	fs::copy_file(recordFile("volume-tags", "vol-0000000000000000a"),
		      recordFile("volume-tags", "vol-0000000000000000b"), fs::copy_options::overwrite_existing);
	auto r = store_->getRecord("volume-tags", "vol-0000000000000000b");
	EXPECT_EQ(codeOf(r), errc::kCorrupt) << describe(r);
	fs::copy_file(recordFile("volume-tags", "vol-0000000000000000a"),
		      recordFile("instances", "vol-0000000000000000a"), fs::copy_options::overwrite_existing);
	auto k = store_->getRecord("instances", "vol-0000000000000000a");
	EXPECT_EQ(codeOf(k), errc::kCorrupt) << describe(k);

	auto ok = store_->getRecord("volume-tags", "vol-0000000000000000a");
	ASSERT_TRUE(ok && ok->has_value()) << describe(ok);
	EXPECT_EQ(**ok, R"({"a":1})");
}

TEST_F(RecordTest, FlippedByteIsCorrupted)
{
	ASSERT_TRUE(store_->putRecord("volume-tags", "vol-0000000000000000a", R"({"tags":[1,2,3]})"));
	fs::path path = recordFile("volume-tags", "vol-0000000000000000a");
	auto size = fs::file_size(path);
	for (uint64_t at : {uint64_t(0), uint64_t(6), size / 2, size - 1}) {
		flipByte(path, at);
		auto r = store_->getRecord("volume-tags", "vol-0000000000000000a");
		EXPECT_EQ(codeOf(r), errc::kCorrupt) << "record byte " << at << ": " << describe(r);
		flipByte(path, at);
	}
	auto ok = store_->getRecord("volume-tags", "vol-0000000000000000a");
	EXPECT_TRUE(ok && ok->has_value()) << describe(ok);
}

TEST_F(RecordTest, ManifestDoesNotOpenAsRecord)
{
	// Same key, but the object type is in the header: a manifest placed
	// where a record is expected is refused even if the names matched.
	Manifest m;
	m.snapshotId = "snap-0123456789abcdef0";
	m.startTime = "t";
	m.chunkSize = 65536;
	m.pageEntries = 1024;
	ASSERT_TRUE(store_->putManifest(m));
	ASSERT_TRUE(makeDirs(recordFile("k", "x").parent_path()));
	fs::copy_file(storeDir() / "snapshots" / (m.snapshotId + ".manifest"), recordFile("k", "x"));
	auto r = store_->getRecord("k", "x");
	EXPECT_EQ(codeOf(r), errc::kCorrupt) << describe(r);
}

} // namespace
} // namespace virtsnap::store::test
