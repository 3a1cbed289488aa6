// Store::init and Store::open: the layout FORMAT.md promises, the key file,
// and every refusal, each of which must leave the store as it was. On every
// backend; what only a directory has (file modes, a store named by its
// path) on a directory.
#include <sys/stat.h>

#include <cctype>
#include <string>

#include "json/json.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

class StoreOpenTest : public BackendStoreTest
{
protected:
	// Store::init of the store under test.
	Result<void> init(const fs::path &key, uint32_t chunkSize = Store::kDefaultChunkSize, bool *created = nullptr)
	{
		bool ignored = false;
		return Store::init(*backend_, key, chunkSize, created ? created : &ignored);
	}
};

// A store in a directory, named by its path.
class StoreDirOpenTest : public StoreDirTest
{
};

TEST_P(StoreOpenTest, InitCreatesLayoutAndKeyFile)
{
	bool created = false;
	auto r = init(keyFile(), Store::kDefaultChunkSize, &created);
	ASSERT_TRUE(r) << describe(r);
	EXPECT_TRUE(created);

	// A new store is its config and its key domain, nothing else: the
	// other directories appear with the first object written into them.
	std::vector<std::string> files = objectsEndingWith(*backend_, "", "");
	ASSERT_EQ(files.size(), 2u);
	EXPECT_EQ(files[0], "config.json");
	EXPECT_EQ(files[1].substr(0, 5), "keys/");
	EXPECT_EQ(files[1].size(), 5u + 16u + 4u) << files[1];
	// Only files have modes, and only a directory has temporary files
	// that list() does not show.
	if (local()) {
		EXPECT_EQ(fileMode(fs::path(url_) / files[1]), 0600u);
		EXPECT_TRUE(filesContaining(url_, ".tmp-").empty());
	}

	ASSERT_TRUE(fs::is_regular_file(keyFile()));
	EXPECT_EQ(fileMode(keyFile()), 0600u);
	auto master = crypto::loadKeyFile(keyFile());
	ASSERT_TRUE(master) << describe(master);

	auto text = backend_->get("config.json");
	ASSERT_TRUE(text) << describe(text);
	auto config = virtsnap::Json::parse(std::string_view((const char *)text->data(), text->size()));
	ASSERT_TRUE(config.has_value());
	EXPECT_EQ(config->getString("format").value_or(""), "virtsnap-store");
	EXPECT_EQ(config->getInt("version").value_or(0), 3);
	EXPECT_EQ(config->getInt("chunk_size").value_or(0), int64_t(Store::kDefaultChunkSize));
	std::string storeId = config->getString("store_id").value_or("");
	EXPECT_FALSE(storeId.empty());

	// Exactly one key domain, the one the config names, sealed for the
	// master key and private to the owner.
	auto keys = objectsEndingWith(*backend_, "keys/", ".key");
	ASSERT_EQ(keys.size(), 1u);
	std::string domainHex = config->getString("default_key_domain").value_or("");
	EXPECT_EQ(fs::path(keys[0]).filename().string(), domainHex + ".key");
	if (local()) {
		EXPECT_EQ(fileMode(fs::path(url_) / keys[0]) & 077, 0u);
	}
	auto sealed = backend_->get(keys[0]);
	ASSERT_TRUE(sealed);
	auto domain = unwrapDomain(*sealed, *master, storeId);
	ASSERT_TRUE(domain) << describe(domain);
	EXPECT_EQ(domain->idHex(), domainHex);

	auto store = open(keyFile());
	ASSERT_TRUE(store) << describe(store);
	EXPECT_EQ((*store)->storeId(), storeId);
	EXPECT_EQ((*store)->chunkSize(), Store::kDefaultChunkSize);
	EXPECT_EQ((*store)->domain().idHex(), domainHex);
}

TEST_P(StoreOpenTest, InitWithExistingKeyUsesItAndDoesNotSetKeyCreated)
{
	auto key = crypto::SecretKey::random();
	ASSERT_TRUE(key);
	ASSERT_TRUE(crypto::writeKeyFile(keyFile(), *key));
	auto before = readFile(keyFile());
	ASSERT_TRUE(before);

	bool created = true;
	auto r = init(keyFile(), 4096, &created);
	ASSERT_TRUE(r) << describe(r);
	EXPECT_FALSE(created);
	auto after = readFile(keyFile());
	ASSERT_TRUE(after);
	EXPECT_EQ(*before, *after);

	auto store = open(keyFile());
	ASSERT_TRUE(store) << describe(store);
	EXPECT_EQ((*store)->chunkSize(), 4096u);
}

TEST_P(StoreOpenTest, SecondInitIsRefusedAndChangesNothing)
{
	ASSERT_TRUE(init(keyFile()));
	auto before = storeSnapshot(*backend_);
	auto keysBefore = treeSnapshot(root_);

	// With the same key file, and with a new key path: neither may touch
	// the store, and the second must not leave a new key file behind.
	auto again = init(keyFile(), 4096);
	ASSERT_FALSE(again);
	EXPECT_EQ(again.error().code, errc::kStoreExists);

	fs::path otherKey = root_ / "other.key";
	auto withNewKey = init(otherKey);
	ASSERT_FALSE(withNewKey);
	EXPECT_EQ(withNewKey.error().code, errc::kStoreExists);
	EXPECT_FALSE(fs::exists(otherKey));

	EXPECT_EQ(storeSnapshot(*backend_), before);
	EXPECT_EQ(treeSnapshot(root_), keysBefore);
}

TEST_P(StoreOpenTest, BadChunkSizesAreRefusedBeforeCreatingAnything)
{
	for (uint32_t size : {0u, 1u, 2048u, 4095u, 4097u, 12288u, 65535u, 32u << 20, 0x80000000u}) {
		bool created = false;
		auto r = init(keyFile(), size, &created);
		ASSERT_FALSE(r) << size;
		EXPECT_EQ(r.error().code, errc::kInvalidParameterValue) << size;
		EXPECT_FALSE(created) << size;
		EXPECT_TRUE(storeSnapshot(*backend_).empty()) << size;
		EXPECT_FALSE(fs::exists(keyFile())) << size;
	}
}

TEST_P(StoreOpenTest, ChunkSizeBoundsAreAccepted)
{
	for (uint32_t size : {4096u, 16u << 20}) {
		std::unique_ptr<Backend> backend;
		std::string url;
		REQUIRE_BACKEND(GetParam(), backend, url);
		bool created = false;
		auto r = Store::init(*backend, keyFile(), size, &created);
		ASSERT_TRUE(r) << size << ": " << describe(r);
		auto store = Store::open(std::move(backend), keyFile());
		ASSERT_TRUE(store) << describe(store);
		EXPECT_EQ((*store)->chunkSize(), size);
	}
}

TEST_P(StoreOpenTest, OpenWithoutStoreIsNotInitialized)
{
	std::unique_ptr<Backend> elsewhere;
	std::string elsewhereUrl;
	REQUIRE_BACKEND(GetParam(), elsewhere, elsewhereUrl);
	bool created = false;
	ASSERT_TRUE(Store::init(*elsewhere, keyFile(), Store::kDefaultChunkSize, &created));

	// An empty store, and on a directory a missing one: a path may name
	// either.
	if (local()) {
		auto missing = Store::open(root_ / "missing", keyFile());
		ASSERT_FALSE(missing);
		EXPECT_EQ(missing.error().code, errc::kStoreNotInitialized);
		EXPECT_FALSE(fs::exists(root_ / "missing"));
		fs::create_directory(url_);
	}
	auto before = storeSnapshot(*backend_);
	auto empty = open(keyFile());
	ASSERT_FALSE(empty);
	EXPECT_EQ(empty.error().code, errc::kStoreNotInitialized);
	EXPECT_EQ(storeSnapshot(*backend_), before);
}

TEST_P(StoreOpenTest, WrongKeyIsNamedWithoutKeyMaterial)
{
	ASSERT_TRUE(init(keyFile()));
	fs::path otherKey = root_ / "other" / "other.key";
	auto other = crypto::SecretKey::random();
	ASSERT_TRUE(other);
	ASSERT_TRUE(crypto::writeKeyFile(otherKey, *other));

	auto r = open(otherKey);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kWrongKey);
	const std::string &msg = r.error().message;
	EXPECT_NE(msg.find(otherKey.string()), std::string::npos) << msg;
	EXPECT_NE(msg.find(backend_->describe()), std::string::npos) << msg;

	// Neither master key nor the domain's keys, in any case.
	auto right = crypto::loadKeyFile(keyFile());
	ASSERT_TRUE(right);
	auto good = open(keyFile());
	ASSERT_TRUE(good) << describe(good);
	std::string lower = msg;
	for (char &c : lower)
		c = char(std::tolower((unsigned char)c));
	for (const std::string &secret : {keyHex(*other), keyHex(*right), keyHex((*good)->domain().encKey),
					  keyHex((*good)->domain().idKey)}) {
		EXPECT_EQ(lower.find(secret), std::string::npos);
		EXPECT_EQ(lower.find(secret.substr(0, 16)), std::string::npos);
	}
}

// "Before touching anything" (store.h): not even the lock file is created.
TEST_P(StoreOpenTest, WrongKeyOpenTouchesNothing)
{
	ASSERT_TRUE(init(keyFile()));
	fs::path otherKey = root_ / "other.key";
	auto other = crypto::SecretKey::random();
	ASSERT_TRUE(other);
	ASSERT_TRUE(crypto::writeKeyFile(otherKey, *other));
	auto before = storeSnapshot(*backend_);

	auto r = open(otherKey);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kWrongKey);
	EXPECT_EQ(storeSnapshot(*backend_), before);
}

// The key file's mode is checked the same whatever the backend.
TEST_F(StoreDirOpenTest, KeyFileReadableByOthersIsRefused)
{
	bool created = false;
	ASSERT_TRUE(Store::init(storeDir(), keyFile(), Store::kDefaultChunkSize, &created));
	ASSERT_EQ(::chmod(keyFile().c_str(), 0644), 0);
	auto before = treeSnapshot(storeDir());

	auto r = Store::open(storeDir(), keyFile());
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kKeyFile);
	EXPECT_NE(r.error().message.find(keyFile().string()), std::string::npos) << r.error().message;
	EXPECT_EQ(treeSnapshot(storeDir()), before);

	// And it opens again once the mode is fixed: the refusal was the mode.
	ASSERT_EQ(::chmod(keyFile().c_str(), 0600), 0);
	auto fixed = Store::open(storeDir(), keyFile());
	EXPECT_TRUE(fixed) << describe(fixed);
}

TEST_P(StoreOpenTest, MissingKeyFileIsKeyFileError)
{
	ASSERT_TRUE(init(keyFile()));
	auto r = open(root_ / "nope.key");
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kKeyFile);
}

TEST_P(StoreOpenTest, InitWithUnusableKeyFileCreatesNoStore)
{
	ASSERT_TRUE(makeDirs(keyFile().parent_path(), 0700));
	std::string junk = "not a key\n";
	ASSERT_TRUE(writeFileAtomic(keyFile(), asBytes(junk), 0600));
	bool created = false;
	auto r = init(keyFile(), Store::kDefaultChunkSize, &created);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kKeyFile);
	EXPECT_FALSE(created);
	EXPECT_FALSE(hasObject(*backend_, "config.json"));
}

TEST_P(StoreOpenTest, ConfigOfAnotherVersionIsRefused)
{
	ASSERT_TRUE(init(keyFile()));
	auto text = backend_->get("config.json");
	ASSERT_TRUE(text);
	auto config = virtsnap::Json::parse(std::string_view((const char *)text->data(), text->size()));
	ASSERT_TRUE(config.has_value());
	// 1 to 3 are read (FORMAT.md); 4 is a later one.
	config->set("version", virtsnap::Json::integer(4));
	std::string changed = config->dump(true);
	ASSERT_TRUE(backend_->put("config.json", asBytes(changed)));

	auto r = open(keyFile());
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
}

// Found by tests/fuzz (store-config): open took any power of two, 1 or 2^31
// included, and a value past 32 bits cut to one (2^32 + 4096 read as 4096).
TEST_P(StoreOpenTest, ConfigWithAChunkSizeInitRefusesIsCorrupt)
{
	ASSERT_TRUE(init(keyFile()));
	auto text = backend_->get("config.json");
	ASSERT_TRUE(text);
	for (int64_t size : {int64_t(1), int64_t(2048), int64_t(1) << 31, (int64_t(1) << 32) + 4096}) {
		auto config = virtsnap::Json::parse(std::string_view((const char *)text->data(), text->size()));
		ASSERT_TRUE(config.has_value());
		config->set("chunk_size", virtsnap::Json::integer(size));
		auto parsed = parseStoreConfig(asBytes(config->dump()), "test");
		EXPECT_EQ(codeOf(parsed), errc::kCorrupt) << size;
	}
	EXPECT_TRUE(open(keyFile()));
}

INSTANTIATE_TEST_SUITE_P(, StoreOpenTest, ::testing::ValuesIn(virtsnap::test::backendNames()), backendSuffix);

} // namespace
} // namespace virtsnap::store::test
