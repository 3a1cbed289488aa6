// KMS-style keys (engine/kms_keys.h) on a store in a directory, with
// snapshots written through the EBS direct APIs' write side (no QEMU):
// keys and grants and their refusals (one line, nothing changed); a
// snapshot sealed under a key of its own, whose every chunk id differs
// from the same data's under the default key, that verifies, survives gc
// and restores bit-exact into a LUKS qcow2; a re-encrypting copy within
// the store (new ids, verified, restored after its source is deleted and
// gc ran); a store reopened finds a key another process made. References
// are raw files the test writes itself, compared with qemu-img compare.
#include <fcntl.h>

#include <map>
#include <set>

#include "core/process.h"
#include "core/unique_fd.h"
#include "crypto/crypto.h"
#include "engine/accounts.h"
#include "engine/block_writes.h"
#include "engine/kms_keys.h"
#include "engine/maintenance.h"
#include "engine/restore.h"
#include "engine/snapshot_copy.h"
#include "store/gc.h"
#include "store/verify.h"
#include "tests/engine/block_write_util.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine {
namespace {

using store::test::describe;
using test::writeReference;
using store::test::randomData;

const TimePoint kKeysNow = TimePoint(std::chrono::seconds(1'800'000'000));
constexpr uint64_t kKeysGiB = 1ull << 30;
const std::string kOther = "222222222222";
const std::string kPassphrase = "kms keys test passphrase";

class KmsKeysTest : public store::test::StoreDirTest
{
protected:
	void SetUp() override
	{
		store_ = initAndOpen();
		ASSERT_TRUE(store_);
		auto def = ensureDefaultAccount(*store_, keyFile());
		ASSERT_TRUE(def) << describe(def);
		default_ = *def;
		auto other = createAccount(*store_, kOther, root_ / "keys" / "other.key");
		ASSERT_TRUE(other) << describe(other);
	}

	// A 1 GiB snapshot of `blocks`, under `key` when not empty, and its
	// raw reference (sparse).
	std::string write(const std::map<uint64_t, Bytes> &blocks, const std::string &key, const fs::path &reference)
	{
		StartRequest req;
		req.volumeSizeGiB = 1;
		req.encrypted = !key.empty();
		req.kmsKeyId = key;
		std::string id = test::writeBlocks(writes_, *store_, req, blocks, kKeysNow);
		writeReference(reference, kKeysGiB, blocks);
		return id;
	}

	// The chunk ids of a snapshot, index pages included, read under the
	// domain its manifest names.
	std::set<store::ChunkId> idsOf(const std::string &id)
	{
		std::set<store::ChunkId> out;
		auto m = store_->getManifest(id);
		EXPECT_TRUE(m) << describe(m);
		if (!m)
			return out;
		for (const store::ChunkId &page : m->indexPages)
			if (!store::isZeroId(page))
				out.insert(page);
		auto codec = store_->codecOf(*m);
		EXPECT_TRUE(codec) << describe(codec);
		if (!codec)
			return out;
		auto index = store::SnapshotIndex::load(*store_, **codec, *m);
		EXPECT_TRUE(index) << describe(index);
		for (uint64_t s = 0; index && s < index->slots(); s++)
			if (!store::isZeroId(index->at(s)))
				out.insert(index->at(s));
		return out;
	}

	static ::testing::AssertionResult disjoint(const std::set<store::ChunkId> &a, const std::set<store::ChunkId> &b)
	{
		if (a.empty() || b.empty())
			return ::testing::AssertionFailure() << "no chunks to compare";
		for (const store::ChunkId &id : a)
			if (b.count(id))
				return ::testing::AssertionFailure() << "chunk id " << store::idHex(id) << " is in both";
		return ::testing::AssertionSuccess();
	}

	::testing::AssertionResult verified(const std::string &id)
	{
		auto report = store::verifySnapshots(*store_, {id});
		if (!report)
			return ::testing::AssertionFailure() << report.error().toString();
		if (!report->ok() || report->snapshots.size() != 1 || report->chunksChecked == 0)
			return ::testing::AssertionFailure() << id << " does not verify";
		return ::testing::AssertionSuccess();
	}

	// Restored into a LUKS qcow2 (an encrypted snapshot restores only so)
	// and compared, opened with the passphrase, with `reference`.
	::testing::AssertionResult restoresAs(const std::string &id, const fs::path &reference)
	{
		fs::path target = root_ / (id + "-" + std::to_string(restores_++) + ".qcow2");
		RestoreRequest req{id, target, "qcow2", nullptr, ""};
		req.luks = LuksSettings{kPassphrase, std::chrono::milliseconds(10)};
		auto restored = createVolume(*store_, req);
		if (!restored)
			return ::testing::AssertionFailure() << "restore of " << id << ": " << restored.error().toString();
		std::string secret = "secret,id=sec0,data=" + kPassphrase;
		auto compared = runProgram({"qemu-img", "compare", "-q", "--object", secret, "--image-opts",
					    "driver=qcow2,file.filename=" + target.string() + ",encrypt.key-secret=sec0",
					    "driver=raw,file.filename=" + reference.string()});
		fs::remove(target);
		if (!compared)
			return ::testing::AssertionFailure() << id << " restores other than " << reference << ": "
							     << compared.error().toString();
		return ::testing::AssertionSuccess();
	}

	void gc()
	{
		store::GcOptions options;
		options.grace = std::chrono::seconds(0);
		auto collected = store::collectGarbage(*store_, options);
		ASSERT_TRUE(collected) << describe(collected);
	}

	Result<store::Manifest> copy(const std::string &id, bool encrypted, const std::string &key)
	{
		auto minted = newResourceId("snap-");
		EXPECT_TRUE(minted);
		CopyRequest req;
		req.sourceSnapshotId = id;
		req.snapshotId = *minted;
		req.ownerId = "0";
		req.encrypted = encrypted;
		req.kmsKeyId = key;
		return copySnapshot(*store_, *store_, req, nullptr, nullptr);
	}

	BlockWrites writes_{root_ / "state"};
	std::unique_ptr<store::Store> store_;
	std::string default_;
	int restores_ = 0;
};

TEST_F(KmsKeysTest, KeysAndGrants)
{
	auto made = createKmsKey(*store_, default_, "for the database");
	ASSERT_TRUE(made) << describe(made);
	EXPECT_EQ(made->keyId.size(), 16u);
	EXPECT_NE(made->keyId, store_->domain().idHex());
	EXPECT_EQ(made->accountId, default_);
	EXPECT_TRUE(fs::exists(storeDir() / "keys" / (made->keyId + ".key"))) << "a key domain of the store";

	// The default account's default key is the store's default domain;
	// another account's is made once, on first need.
	auto mine = defaultKmsKey(*store_, default_, default_);
	ASSERT_TRUE(mine) << describe(mine);
	EXPECT_EQ(*mine, store_->domain().idHex());
	auto theirs = defaultKmsKey(*store_, kOther, default_);
	ASSERT_TRUE(theirs) << describe(theirs);
	EXPECT_NE(*theirs, *mine);
	auto again = defaultKmsKey(*store_, kOther, default_);
	ASSERT_TRUE(again);
	EXPECT_EQ(*again, *theirs);

	auto listed = listKmsKeys(*store_, default_, default_);
	ASSERT_TRUE(listed) << describe(listed);
	std::set<std::string> ids;
	for (const KmsKey &k : *listed)
		ids.insert(k.keyId);
	EXPECT_EQ(ids, (std::set<std::string>{*mine, made->keyId})) << "not the other account's";
	EXPECT_FALSE(*mayUseKmsKey(*store_, made->keyId, kOther, default_));

	// Bad input: one line, nothing changed.
	auto before = store::test::treeSnapshot(storeDir());
	auto oneLine = [](const auto &r, const char *code) {
		return !r && r.error().code == code && r.error().toString().find('\n') == std::string::npos;
	};
	EXPECT_TRUE(oneLine(createKmsGrant(*store_, "0123456789abcdef", default_, kOther, default_),
			    errc::kKeyNotFound));
	EXPECT_TRUE(oneLine(createKmsGrant(*store_, "not-a-key", default_, kOther, default_), errc::kKeyNotFound));
	EXPECT_TRUE(oneLine(createKmsGrant(*store_, made->keyId, default_, "999999999999", default_),
			    errc::kInvalidParameterValue));
	EXPECT_TRUE(oneLine(createKmsGrant(*store_, made->keyId, kOther, kOther, default_), errc::kAccessDenied))
		<< "only the owner grants";
	auto denied = requireKmsKeyUse(*store_, made->keyId, kOther, default_);
	EXPECT_TRUE(oneLine(denied, errc::kAccessDenied));
	EXPECT_NE(denied.error().message.find(made->keyId), std::string::npos) << "names the key";
	EXPECT_EQ(store::test::treeSnapshot(storeDir()), before);

	auto grant = createKmsGrant(*store_, made->keyId, default_, kOther, default_);
	ASSERT_TRUE(grant) << describe(grant);
	EXPECT_EQ(grant->grantId.size(), 64u);
	EXPECT_TRUE(*mayUseKmsKey(*store_, made->keyId, kOther, default_));
	auto granted = listKmsKeys(*store_, kOther, default_);
	ASSERT_TRUE(granted);
	EXPECT_TRUE(std::any_of(granted->begin(), granted->end(), [&](const KmsKey &k) { return k.keyId == made->keyId; }));
	auto same = createKmsGrant(*store_, made->keyId, default_, kOther, default_);
	ASSERT_TRUE(same);
	EXPECT_EQ(same->grantId, grant->grantId) << "the same grant again is that grant";

	// Another process (a reopened store) finds the key in keys/.
	auto reopened = openOrNull(storeDir(), keyFile());
	ASSERT_TRUE(reopened);
	auto domain = reopened->domain(made->keyId);
	ASSERT_TRUE(domain) << describe(domain);
	EXPECT_EQ((*domain)->idHex(), made->keyId);
}

TEST_F(KmsKeysTest, ASnapshotUnderItsKeyHasIdsOfItsOwnVerifiesAndRestores)
{
	auto key = createKmsKey(*store_, default_, "");
	ASSERT_TRUE(key) << describe(key);
	std::map<uint64_t, Bytes> blocks;
	for (uint64_t b : {0, 1, 2, 9, 2047})
		blocks[b] = randomData(kBlockSize, b + 1);
	fs::path refPlain = root_ / "plain.ref", refSealed = root_ / "sealed.ref";
	std::string plain = write(blocks, "", refPlain);
	std::string sealed = write(blocks, key->keyId, refSealed);
	auto m = store_->getManifest(sealed);
	ASSERT_TRUE(m) << describe(m);
	EXPECT_TRUE(m->encrypted);
	EXPECT_EQ(m->kmsKeyId, key->keyId);
	EXPECT_TRUE(disjoint(idsOf(plain), idsOf(sealed))) << "the same data under another key";
	// Read under the default domain, its index pages fail authentication.
	auto wrong = store::SnapshotIndex::load(*store_, *store_->newCodec(), *m);
	EXPECT_FALSE(wrong);

	// gc reads its index pages under its key, and keeps its chunks.
	ASSERT_TRUE(deleteSnapshot(*store_, plain));
	ASSERT_NO_FATAL_FAILURE(gc());
	EXPECT_TRUE(verified(sealed));
	EXPECT_TRUE(restoresAs(sealed, refSealed));
	auto bare = createVolume(*store_, {sealed, root_ / "bare.raw", "raw", nullptr, ""});
	EXPECT_FALSE(bare) << "an encrypted snapshot restores only into an encrypted volume";

	// An unknown key: nothing starts.
	StartRequest req;
	req.volumeSizeGiB = 1;
	req.encrypted = true;
	req.kmsKeyId = "0123456789abcdef";
	auto unknown = writes_.start(*store_, req, kKeysNow);
	ASSERT_FALSE(unknown);
	EXPECT_EQ(unknown.error().code, errc::kKeyNotFound) << unknown.error().toString();
}

TEST_F(KmsKeysTest, AReencryptingCopyResealsEveryChunk)
{
	auto k1 = createKmsKey(*store_, default_, "one");
	auto k2 = createKmsKey(*store_, default_, "two");
	ASSERT_TRUE(k1 && k2);
	std::map<uint64_t, Bytes> blocks;
	for (uint64_t b : {0, 5, 6, 100})
		blocks[b] = randomData(kBlockSize, b + 7);
	fs::path ref = root_ / "a.ref";
	std::string a = write(blocks, k1->keyId, ref);

	// Same key, same store: a manifest and no data.
	auto same = copy(a, false, "");
	ASSERT_TRUE(same) << describe(same);
	EXPECT_EQ(same->kmsKeyId, k1->keyId) << "the source's key when none is given";
	EXPECT_EQ(same->stats.bytesTransferred, 0u);
	EXPECT_EQ(same->stats.bytesAdded, 0u);

	auto moved = copy(a, false, k2->keyId);
	ASSERT_TRUE(moved) << describe(moved);
	EXPECT_TRUE(moved->encrypted);
	EXPECT_EQ(moved->kmsKeyId, k2->keyId);
	EXPECT_EQ(moved->stats.bytesTransferred, blocks.size() * kBlockSize) << "every chunk read once";
	EXPECT_TRUE(disjoint(idsOf(a), idsOf(moved->snapshotId))) << "every chunk re-sealed, new ids";
	EXPECT_TRUE(verified(moved->snapshotId));

	// An unencrypted snapshot copied --encrypted under k2.
	fs::path refPlain = root_ / "p.ref";
	std::string p = write(blocks, "", refPlain);
	auto sealed = copy(p, true, k2->keyId);
	ASSERT_TRUE(sealed) << describe(sealed);
	EXPECT_TRUE(sealed->encrypted);
	EXPECT_EQ(sealed->kmsKeyId, k2->keyId);
	EXPECT_EQ(idsOf(sealed->snapshotId), idsOf(moved->snapshotId)) << "the same data under one key dedups";

	// The sources gone and gc run: the copies hold their chunks.
	ASSERT_TRUE(deleteSnapshot(*store_, a));
	ASSERT_TRUE(deleteSnapshot(*store_, same->snapshotId));
	ASSERT_TRUE(deleteSnapshot(*store_, p));
	ASSERT_NO_FATAL_FAILURE(gc());
	EXPECT_TRUE(verified(moved->snapshotId));
	EXPECT_TRUE(restoresAs(moved->snapshotId, ref));
	EXPECT_TRUE(restoresAs(sealed->snapshotId, ref));

	// An unknown key: no copy.
	auto before = store::test::treeSnapshot(storeDir());
	auto unknown = copy(moved->snapshotId, false, "0123456789abcdef");
	ASSERT_FALSE(unknown);
	EXPECT_EQ(unknown.error().code, errc::kKeyNotFound) << unknown.error().toString();
	EXPECT_EQ(store::test::treeSnapshot(storeDir()), before);
}

} // namespace
} // namespace virtsnap::engine
