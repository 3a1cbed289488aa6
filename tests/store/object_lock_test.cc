// Snapshot locks enforced by S3 Object Lock (engine/snapshot_locks.h,
// store/snapshot_retention.h) on the test cluster's radosgw: a lock on a
// store in a bucket with Object Lock retains the snapshot's objects, so
// that a DELETE of their versions with the store's own credentials is
// refused by radosgw, while the same DELETE of an unlocked snapshot's
// objects goes through; on a bucket without Object Lock the lock says that
// only virtsnap enforces it.
#include "engine/snapshot_locks.h"
#include "tests/engine/clocked_store.h"
#include "store/backend_url.h"
#include "store/held_manifests.h"
#include "store/s3_backend.h"
#include "store/s3_http.h"
#include "store_test_util.h"
#include "tests/support/ceph_cluster.h"

namespace virtsnap::store::test {
namespace {

constexpr uint32_t kLockChunk = 64 * 1024;
constexpr size_t kLockSlots = 16; // 1 MiB a snapshot

class ObjectLockTest : public ::testing::Test
{
protected:
	// A store in a fresh prefix of a bucket with Object Lock, holding a
	// snapshot to lock and one to leave unlocked, each in packs of its own.
	void SetUp() override
	{
		std::string why;
		virtsnap::test::CephCluster *cluster = virtsnap::test::CephCluster::shared(&why);
		const virtsnap::test::S3Gateway *gateway = cluster ? cluster->gateway(&why) : nullptr;
		if (!gateway) {
			if (virtsnap::test::inCi())
				FAIL() << "radosgw: " << why << " (required when CI=true)";
			GTEST_SKIP() << "radosgw: " << why;
		}
		static int next = 0;
		settings_.s3CredentialsFile = gateway->credentialsFile;
		auto bucket = parseStoreUrl("s3://virtsnap-object-lock?endpoint=" + gateway->endpoint);
		ASSERT_TRUE(bucket) << describe(bucket);
		auto made = createS3Bucket(*bucket, settings_, true);
		ASSERT_TRUE(made) << describe(made);
		std::string prefix = "lock-" + std::to_string(next++);
		auto url = parseStoreUrl("s3://virtsnap-object-lock/" + prefix + "?endpoint=" + gateway->endpoint);
		ASSERT_TRUE(url) << describe(url);
		url_ = *url;
		keyPrefix_ = prefix + "/";
		auto credentials = s3::loadCredentials(settings_);
		ASSERT_TRUE(credentials) << describe(credentials);
		raw_ = std::make_unique<s3::Client>(url_, *credentials, std::chrono::seconds(30));
		ASSERT_NO_FATAL_FAILURE(openStore(url_.text));
		ASSERT_NO_FATAL_FAILURE(save(locked_, 1));
		ASSERT_NO_FATAL_FAILURE(save(unlocked_, 2));
	}

	void openStore(const std::string &url)
	{
		auto backend = openBackend(url, settings_);
		ASSERT_TRUE(backend) << describe(backend);
		bool created = false;
		auto init = Store::init(**backend, keyFile_, kLockChunk, &created);
		ASSERT_TRUE(init) << describe(init);
		auto opened = Store::open(std::move(*backend), keyFile_);
		ASSERT_TRUE(opened) << describe(opened);
		store_ = std::move(*opened);
	}

	// Under the default key domain, or (given one) a KMS key's, as an
	// encrypted volume's snapshot is.
	void save(const std::string &id, uint64_t seed, const KeyDomain *kmsDomain = nullptr)
	{
		std::unique_ptr<ChunkCodec> codec = store_->newCodec();
		if (kmsDomain) {
			auto own = store_->newCodec(kmsDomain->id);
			ASSERT_TRUE(own) << describe(own);
			codec = std::move(*own);
		}
		SnapshotIndex index(kLockSlots * kLockChunk, kLockChunk);
		auto writer = store_->newWriter();
		for (uint64_t s = 0; s < kLockSlots; s++) {
			Bytes data = randomData(kLockChunk, seed * 1000 + s);
			auto c = writer->put(*codec, data, ChunkType::Data);
			ASSERT_TRUE(c) << describe(c);
			index.set(s, *c);
			chunks_[id].push_back(*c);
		}
		Manifest m = manifestFor(id, isoTimeNow());
		if (kmsDomain) {
			m.encrypted = true;
			m.kmsKeyId = kmsDomain->idHex();
		}
		ASSERT_TRUE(index.save(*writer, *codec, m));
		ASSERT_TRUE(writer->commit());
		ASSERT_TRUE(store_->putManifest(m));
	}

	Result<engine::SnapshotLock> lock(const std::string &mode, int64_t days)
	{
		int64_t now = 0;
		return engine::lockSnapshot(*store_, {locked_, mode, days, std::nullopt, std::nullopt}, now);
	}

	// The objects a snapshot is read back from, by the store's names.
	std::vector<std::string> objectsOf(const std::string &id)
	{
		auto at = store_->locate(chunks_[id].front());
		EXPECT_TRUE(at);
		if (!at)
			return {};
		return {manifestName(id), packName(at->pack), packIndexName(at->pack)};
	}

	// With the store's credentials, straight to radosgw.
	s3::Response raw(s3::Request request)
	{
		request.key = keyPrefix_ + request.key;
		auto r = raw_->perform(request);
		EXPECT_TRUE(r) << describe(r);
		return r ? std::move(*r) : s3::Response{};
	}

	std::string currentVersion(const std::string &name)
	{
		s3::Response head = raw({.method = "HEAD", .key = name});
		EXPECT_EQ(head.status, 200) << name;
		EXPECT_FALSE(head.versionId.empty()) << name << ": the bucket does not keep versions";
		return head.versionId;
	}

	// DELETE of the object's version (not a delete marker): what destroys
	// it for good.
	long destroy(const std::string &name, const std::string &version, bool bypass = false)
	{
		s3::Request request{.method = "DELETE", .key = name, .query = {{"versionId", version}}};
		if (bypass)
			request.headers.push_back("x-amz-bypass-governance-retention: true");
		return raw(request).status;
	}

	std::optional<s3::Retention> retention(const std::string &name)
	{
		s3::Response r = raw({.key = name, .query = {{"retention", ""}}});
		auto parsed = s3::parseRetention(r.body);
		return r.status == 200 && parsed ? std::optional(*parsed) : std::nullopt;
	}

	const std::string locked_ = "snap-0b1ec7100c0000001", unlocked_ = "snap-0b1ec7100c0000002";
	BackendSettings settings_;
	StoreUrl url_;
	std::string keyPrefix_;
	std::unique_ptr<s3::Client> raw_;
	virtsnap::test::TempDir tmp_{"vs-object-lock"};
	fs::path keyFile_{tmp_.path() + "/master.key"};
	std::unique_ptr<Store> store_;
	std::map<std::string, std::vector<ChunkId>> chunks_;
};

TEST_F(ObjectLockTest, ALockedSnapshotsObjectsCannotBeDestroyedWithTheStoresCredentials)
{
	auto made = lock("governance", 2);
	ASSERT_TRUE(made) << describe(made);
	EXPECT_TRUE(made->enforcedByStore);

	std::vector<std::string> names = objectsOf(locked_);
	names.push_back(recordName(kSnapshotLockRecords, locked_));
	names.push_back(kConfigName);
	std::map<std::string, std::string> versions;
	for (const std::string &name : names) {
		versions[name] = currentVersion(name);
		EXPECT_EQ(destroy(name, versions[name]), 403) << name << " was destroyed";
		auto r = retention(name);
		ASSERT_TRUE(r) << name << " has no retention";
		EXPECT_EQ(r->mode, RetentionMode::Governance) << name;
		EXPECT_EQ(unixSeconds(r->until), made->expiresOn) << name;
	}

	// Made compliance and longer: the retention follows; now not even a
	// governance bypass (which the bucket's owner may use) destroys them.
	auto stricter = lock("compliance", 3);
	ASSERT_TRUE(stricter) << describe(stricter);
	for (const std::string &name : names) {
		auto r = retention(name);
		ASSERT_TRUE(r) << name;
		EXPECT_EQ(r->mode, RetentionMode::Compliance) << name;
		EXPECT_EQ(unixSeconds(r->until), stricter->expiresOn) << name;
		// The lock record was written anew: its new version is the one
		// retained in compliance mode.
		EXPECT_EQ(destroy(name, currentVersion(name), true), 403) << name << " was destroyed";
	}

	// A plain DELETE only hides the manifest behind a delete marker: its
	// version stays, whole.
	std::string manifest = manifestName(locked_);
	EXPECT_EQ(raw({.method = "DELETE", .key = manifest}).status, 204);
	s3::Response old = raw({.key = manifest, .query = {{"versionId", versions[manifest]}}});
	EXPECT_EQ(old.status, 200);
	EXPECT_FALSE(old.body.empty());

	// The unlocked snapshot's objects, in the same bucket and by the same
	// credentials, are destroyed: the refusals above were the lock's.
	for (const std::string &name : objectsOf(unlocked_))
		EXPECT_EQ(destroy(name, currentVersion(name)), 204) << name;
}

// A snapshot sealed under a KMS key other than the store's default: its
// index pages are read under that key's domain, and the key's file is
// retained with its packs (without it the snapshot cannot be read).
TEST_F(ObjectLockTest, ASnapshotUnderAnotherKeyIsLockedWithItsKeyFile)
{
	auto domain = store_->createDomain();
	ASSERT_TRUE(domain) << describe(domain);
	const std::string keyed = "snap-0b1ec7100c0000003";
	ASSERT_NO_FATAL_FAILURE(save(keyed, 3, *domain));
	int64_t now = 0;
	auto made = engine::lockSnapshot(*store_, {keyed, "governance", 1, std::nullopt, std::nullopt}, now);
	ASSERT_TRUE(made) << describe(made);
	EXPECT_TRUE(made->enforcedByStore);

	std::vector<std::string> names = objectsOf(keyed);
	names.push_back(keyDomainName((*domain)->idHex()));
	names.push_back(keyDomainName(store_->domain().idHex()));
	for (const std::string &name : names) {
		EXPECT_EQ(destroy(name, currentVersion(name)), 403) << name << " was destroyed";
		EXPECT_TRUE(retention(name)) << name << " has no retention";
	}
}

// gc on a versioned bucket: its deletes are delete markers, which it makes
// as elsewhere; what a lock retains reads back whole afterwards.
TEST_F(ObjectLockTest, GcRunsOnAVersionedBucketAndTheLockedSnapshotReadsBack)
{
	auto made = lock("governance", 1);
	ASSERT_TRUE(made) << describe(made);
	ASSERT_TRUE(store_->deleteManifest(unlocked_));
	// Two hours on (within the lock's day), so that the packs are past
	// gc's grace however fast this ran.
	auto backend = openBackend(url_.text, settings_);
	ASSERT_TRUE(backend) << describe(backend);
	auto ahead = std::make_shared<std::chrono::seconds>(std::chrono::hours(2));
	auto later = Store::open(std::make_unique<engine::ClockedBackend>(std::move(*backend), ahead), keyFile_);
	ASSERT_TRUE(later) << describe(later);
	GcOptions opts;
	opts.grace = std::chrono::seconds(0);
	auto report = engine::collectGarbage(**later, opts);
	ASSERT_TRUE(report) << describe(report);
	EXPECT_EQ(report->snapshotsHeld, 1u) << "the lock holds the snapshot";
	EXPECT_GT(report->packsRemoved, 0u);
	auto codec = (*later)->newCodec();
	for (uint64_t s = 0; s < kLockSlots; s++) {
		auto c = (*later)->readChunk(*codec, chunks_[locked_][s]);
		ASSERT_TRUE(c) << describe(c);
		EXPECT_EQ(*c, randomData(kLockChunk, 1000 + s));
	}
}

TEST_F(ObjectLockTest, WithoutObjectLockTheLockIsVirtsnapsAlone)
{
	// The tests' other bucket, made without Object Lock.
	std::string url, reason;
	auto backend = virtsnap::test::freshBackend("s3", &url, &reason);
	ASSERT_TRUE(backend) << reason;
	auto retains = backend->retains();
	ASSERT_TRUE(retains) << describe(retains);
	EXPECT_FALSE(*retains);
	auto refused = backend->retain(kConfigName, RetentionMode::Compliance,
				       std::chrono::system_clock::now() + std::chrono::hours(1));
	ASSERT_FALSE(refused);
	EXPECT_EQ(refused.error().code, errc::kUnsupported) << describe(refused);
	EXPECT_NE(refused.error().message.find("Object Lock"), std::string::npos) << describe(refused);

	store_.reset();
	ASSERT_NO_FATAL_FAILURE(openStore(url));
	ASSERT_NO_FATAL_FAILURE(save(locked_, 3));
	auto made = lock("compliance", 1);
	ASSERT_TRUE(made) << describe(made);
	EXPECT_FALSE(made->enforcedByStore);
	int64_t now = 0;
	auto listed = engine::describeLocks(*store_, {locked_}, now);
	ASSERT_TRUE(listed) << describe(listed);
	ASSERT_EQ(listed->size(), 1u);
	EXPECT_FALSE((*listed)[0].enforcedByStore);
}

} // namespace
} // namespace virtsnap::store::test
