// copy-snapshot end to end with the virtsnap binary, without QEMU (the
// snapshot comes from import-image of a reference the test writes):
// through virtsnapd a copy answers its id at once, completes, adds to the
// store only its manifest (the store's bytes measured), emits a
// copySnapshot event and restores bit for bit (qemu-img compare), also
// after its source is deleted and gc ran; in process a copy from another
// store (another master key), a local one or one on the real Ceph cluster
// (RADOS), restores the same; bad input is one line and changes neither
// store.
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "cli_fixture.h"
#include "tests/support/backends.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;


// Regular files' bytes under a store directory, leases and the catalog
// (host state, which lives in the directory of a local store) left out.
uint64_t storeBytes(const fs::path &dir)
{
	uint64_t total = 0;
	for (const char *part : {"config.json", "keys", "packs", "snapshots", "records"}) {
		fs::path p = dir / part;
		if (fs::is_regular_file(p))
			total += fs::file_size(p);
		else if (fs::is_directory(p))
			for (const auto &e : fs::recursive_directory_iterator(p))
				if (e.is_regular_file())
					total += e.file_size();
	}
	return total;
}

// What a store directory holds, file by file, without leases and the host
// state (catalog, chunk map).
std::map<std::string, uint64_t> storeFiles(const fs::path &dir)
{
	std::map<std::string, uint64_t> out;
	for (const auto &e : fs::recursive_directory_iterator(dir)) {
		std::string rel = fs::relative(e.path(), dir).string();
		if (e.is_regular_file() && rel.rfind("locks/", 0) != 0 && rel.find("catalog") == std::string::npos &&
		    rel.rfind("chunk-map/", 0) != 0)
			out[rel] = e.file_size();
	}
	return out;
}

class CopySnapshotTest : public CliTest
{
protected:
	CopySnapshotTest() : CliTest("vs-copy") {}

	void SetUp() override
	{
		REQUIRE_TOOL("qemu-img");
		ASSERT_EQ(cli({"init"}).status, 0);
		ASSERT_EQ(other({"init"}).status, 0);
		// The other store is a target copies may be pushed to; this one,
		// named there too, is refused as its own target.
		std::ofstream(config_) << "[store-target " << otherStore_ << "]\nkey-file = " << otherKey_
				       << "\n[store-target " << storeDir_ << "]\nkey-file = " << keyFile_ << "\n";
		daemon_ = std::make_unique<Virtsnapd>(daemonOptions(socket_, {"--config", config_}));
		ASSERT_TRUE(daemon_->start());
		// 1 GiB, sparse, 3 MiB of random data at two places.
		int fd = ::open(reference_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(::ftruncate(fd, off_t(kGiB)), 0);
		std::mt19937_64 rng(11);
		std::vector<uint8_t> data(3 * kMiB);
		fillRandom(rng, std::span(data.data(), data.size()));
		ASSERT_EQ(::pwrite(fd, data.data(), 2 * kMiB, 0), ssize_t(2 * kMiB));
		ASSERT_EQ(::pwrite(fd, data.data() + 2 * kMiB, kMiB, off_t(700 * kMiB)), ssize_t(kMiB));
		::close(fd);
	}

	// virtsnap on the second store, in process.
	CliResult other(std::vector<std::string> args)
	{
		args.insert(args.begin(), {"--store", otherStore_, "--key-file", otherKey_});
		return runVirtsnap(args, {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + cliSocket_});
	}

	Json describe(const std::string &id, bool onOther = false)
	{
		std::vector<std::string> args = {"describe-snapshots", "--snapshot-id", id};
		CliResult r = onOther ? other(args) : cli(args, socket_);
		EXPECT_EQ(r.status, 0) << r.err;
		return r.json().get("Snapshots").at(0);
	}

	::testing::AssertionResult restores(const std::string &id, bool onOther = false)
	{
		std::string target = tmp_.file(id + "-" + std::to_string(restores_++) + ".raw");
		std::vector<std::string> args = {"create-volume", "--snapshot-id", id, "--target", target, "--format", "raw"};
		CliResult r = onOther ? other(args) : cli(args, socket_);
		if (r.status != 0)
			return ::testing::AssertionFailure() << "restore of " << id << ": " << r.err;
		auto same = sameImage(target, "raw", reference_);
		fs::remove(target);
		return same;
	}

	// The one-line error of a failed command, with its code.
	static void expectRefused(const CliResult &r, const std::string &code)
	{
		EXPECT_NE(r.status, 0) << r.out;
		EXPECT_EQ(r.err.find("virtsnap: " + code + ":"), 0u) << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	}

	std::string imported()
	{
		CliResult r = cli({"import-image", "--file", reference_, "--format", "raw"}, socket_);
		EXPECT_EQ(r.status, 0) << r.err;
		return r.json().getString("SnapshotId").value_or("");
	}

	std::string socket_ = tmp_.file("virtsnapd.sock");
	std::string reference_ = tmp_.file("reference.raw");
	std::string otherStore_ = tmp_.file("other-store");
	std::string otherKey_ = tmp_.file("keys/other.key");
	std::string config_ = tmp_.file("virtsnap.conf");
	std::unique_ptr<Virtsnapd> daemon_;
	int restores_ = 0;
};

TEST_F(CopySnapshotTest, ThroughTheDaemonACopyIsAManifestThatOutlivesItsSource)
{
	std::string source = imported();
	ASSERT_FALSE(source.empty());
	uint64_t before = storeBytes(storeDir_);

	CliResult r = cli({"copy-snapshot", "--source-snapshot-id", source, "--tag", "copy=yes"}, socket_);
	ASSERT_EQ(r.status, 0) << r.err;
	std::string copy = r.json().getString("SnapshotId").value_or("");
	ASSERT_EQ(r.json().size(), 1u) << "EC2 answers the id alone: " << r.out;
	ASSERT_EQ(waitWhilePending([&] { return describe(copy).getString("State").value_or(""); }), "completed");

	Json shown = describe(copy);
	EXPECT_EQ(shown.getString("SourceSnapshotId"), source);
	EXPECT_FALSE(shown.has("SourceStore")) << "within one store";
	EXPECT_EQ(shown.getInt("BytesAdded"), 0);
	EXPECT_EQ(shown.getInt("BytesTransferred"), 0);
	EXPECT_EQ(shown.getString("VolumeId"), "vol-fffffffffffffffff");
	EXPECT_EQ(shown.getInt("VolumeSize"), 1);
	EXPECT_EQ(shown.getString("Description"), "[Copied " + source + " from this store]");
	EXPECT_EQ(shown.get("Tags").size(), 1u);
	uint64_t manifest = fs::file_size(fs::path(storeDir_) / "snapshots" / (copy + ".manifest"));
	EXPECT_EQ(storeBytes(storeDir_) - before, manifest) << "the copy's manifest and nothing else";

	bool evented = false;
	for (const std::string &line : lines(readFile(tmp_.file("events/events.jsonl")))) {
		auto event = Json::parse(line);
		if (event && event->get("detail").getString("event") == "copySnapshot") {
			EXPECT_EQ(event->get("detail").getString("snapshot_id"), copy);
			EXPECT_EQ(event->get("detail").getString("source"), source);
			EXPECT_EQ(event->get("detail").getString("result"), "succeeded");
			evented = true;
		}
	}
	EXPECT_TRUE(evented) << readFile(tmp_.file("events/events.jsonl"));

	EXPECT_TRUE(restores(copy));
	ASSERT_EQ(cli({"delete-snapshot", "--snapshot-id", source}, socket_).status, 0);
	CliResult gc = cli({"gc", "--grace-seconds", "0"}, socket_);
	ASSERT_EQ(gc.status, 0) << gc.err;
	EXPECT_TRUE(restores(copy)) << "the source gone and gc run";
}

TEST_F(CopySnapshotTest, FromAnotherStoreInProcessAndBadInput)
{
	std::string source = imported();
	ASSERT_FALSE(source.empty());
	auto otherBefore = storeFiles(otherStore_);

	// Bad input first: each one line, and the destination unchanged.
	expectRefused(other({"copy-snapshot", "--source-snapshot-id", source, "--source-store", storeDir_,
			     "--source-key-file", otherKey_, "--wait"}),
		      "WrongKey");
	expectRefused(other({"copy-snapshot", "--source-snapshot-id", source, "--source-store", storeDir_,
			     "--source-key-file", tmp_.file("keys/absent.key"), "--wait"}),
		      "InvalidParameterValue");
	expectRefused(other({"copy-snapshot", "--source-snapshot-id", source, "--source-store", storeDir_, "--wait"}),
		      "MissingParameter");
	expectRefused(other({"copy-snapshot", "--source-snapshot-id", source, "--source-store",
			     tmp_.file("no-store-here"), "--source-key-file", keyFile_, "--wait"}),
		      "StoreNotInitialized");
	expectRefused(other({"copy-snapshot", "--source-snapshot-id", "snap-0123456789abcdef0", "--source-store",
			     storeDir_, "--source-key-file", keyFile_, "--wait"}),
		      "InvalidSnapshot.NotFound");
	EXPECT_EQ(storeFiles(otherStore_), otherBefore);

	CliResult r = other({"copy-snapshot", "--source-snapshot-id", source, "--source-store", storeDir_,
			     "--source-key-file", keyFile_, "--wait"});
	ASSERT_EQ(r.status, 0) << r.err;
	std::string copy = r.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(r.json().getString("State"), "completed") << r.out;
	Json shown = describe(copy, true);
	EXPECT_EQ(shown.getString("SourceSnapshotId"), source);
	EXPECT_EQ(shown.getString("SourceStore"), storeDir_);
	EXPECT_EQ(shown.getInt("BytesTransferred"), int64_t(3 * kMiB)) << "every chunk with data, once";
	EXPECT_GE(shown.getInt("BytesAdded").value_or(0), int64_t(3 * kMiB)) << "random data does not shrink";
	EXPECT_TRUE(restores(copy, true));

	// A pending source and an unknown one, through virtsnapd.
	CliResult started = cli({"start-snapshot", "--volume-size", "1"}, socket_);
	ASSERT_EQ(started.status, 0) << started.err;
	std::string pending = started.json().getString("SnapshotId").value_or("");
	expectRefused(cli({"copy-snapshot", "--source-snapshot-id", pending}, socket_), "IncorrectState");
	expectRefused(cli({"copy-snapshot", "--source-snapshot-id", "snap-0123456789abcdef0"}, socket_),
		      "InvalidSnapshot.NotFound");
}

// Out of this store, through virtsnapd, into a store its config file names
// with its key: the answer names both ids once the copy is written there;
// the copy restores bit for bit from the other store, which shows this
// store as its source; this store is unchanged. A second copy of the same
// snapshot costs the target nothing. Bad input changes neither store.
TEST_F(CopySnapshotTest, OutOfThisStoreIntoAStoreTheConfigNames)
{
	std::string source = imported();
	ASSERT_FALSE(source.empty());
	auto ownBefore = storeFiles(storeDir_);
	auto otherBefore = storeFiles(otherStore_);

	auto push = [&](std::vector<std::string> more) {
		std::vector<std::string> args = {"copy-snapshot", "--source-snapshot-id", source};
		args.insert(args.end(), more.begin(), more.end());
		return cli(args, socket_);
	};
	CliResult unknown = push({"--destination-store", tmp_.file("elsewhere")});
	expectRefused(unknown, "InvalidParameterValue");
	EXPECT_NE(unknown.err.find("has no [store-target " + tmp_.file("elsewhere") + "] group"), std::string::npos)
		<< unknown.err;
	CliResult self = push({"--destination-store", storeDir_});
	expectRefused(self, "InvalidParameterValue");
	EXPECT_NE(self.err.find("is this store"), std::string::npos) << self.err;
	expectRefused(push({"--destination-store", otherStore_, "--source-store", otherStore_, "--source-key-file",
			    otherKey_}),
		      "InvalidParameterValue");
	expectRefused(push({"--destination-store", otherStore_, "--client-token", "t1"}), "InvalidParameterValue");
	expectRefused(cli({"copy-snapshot", "--source-snapshot-id", "snap-0123456789abcdef0", "--destination-store",
			   otherStore_},
			  socket_),
		      "InvalidSnapshot.NotFound");
	EXPECT_EQ(storeFiles(otherStore_), otherBefore);

	CliResult r = push({"--destination-store", otherStore_, "--tag", "dr=yes"});
	ASSERT_EQ(r.status, 0) << r.err;
	std::string copy = r.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(r.json().getString("SourceSnapshotId"), source) << r.out;
	EXPECT_EQ(r.json().getString("DestinationStore"), otherStore_) << r.out;
	EXPECT_EQ(r.json().getString("State"), "completed") << r.out;
	EXPECT_EQ(r.json().getInt("BytesTransferred"), int64_t(3 * kMiB)) << r.out;
	EXPECT_GE(r.json().getInt("BytesAdded").value_or(0), int64_t(3 * kMiB)) << r.out;
	EXPECT_EQ(storeFiles(storeDir_), ownBefore) << "the copy is the other store's";
	CliResult here = cli({"describe-snapshots", "--snapshot-id", copy}, socket_);
	EXPECT_NE(here.status, 0) << "not in this store: " << here.out;

	Json shown = describe(copy, true);
	EXPECT_EQ(shown.getString("SourceSnapshotId"), source);
	EXPECT_EQ(shown.getString("SourceStore"), storeDir_);
	EXPECT_EQ(shown.get("Tags").at(0).getString("Value"), "yes") << shown.dump();
	EXPECT_TRUE(restores(copy, true));

	CliResult again = push({"--destination-store", otherStore_});
	ASSERT_EQ(again.status, 0) << again.err;
	EXPECT_EQ(again.json().getInt("BytesAdded"), 0) << "the target holds every chunk: " << again.out;
	std::string second = again.json().getString("SnapshotId").value_or("");
	EXPECT_NE(second, copy);
	EXPECT_TRUE(restores(second, true));

	int pushed = 0;
	for (const std::string &line : lines(readFile(tmp_.file("events/events.jsonl")))) {
		auto event = Json::parse(line);
		if (event && event->get("detail").getString("event") == "copySnapshot" &&
		    event->get("detail").getString("source") == source &&
		    event->get("detail").getString("result") == "succeeded")
			pushed++;
	}
	EXPECT_EQ(pushed, 2) << readFile(tmp_.file("events/events.jsonl"));
}

// The destination on the real Ceph cluster: every chunk re-sealed under
// that store's key, written through librados, and read back bit for bit.
TEST_F(CopySnapshotTest, IntoARadosStoreRestoresBitExact)
{
	std::unique_ptr<store::Backend> backend;
	std::string url;
	REQUIRE_BACKEND("rados", backend, url);
	std::string source = imported();
	ASSERT_FALSE(source.empty());
	auto onRados = [&](std::vector<std::string> args) {
		args.insert(args.begin(), {"--store", url, "--key-file", tmp_.file("keys/rados.key"), "--state-dir",
					   tmp_.file("rados-state")});
		return runVirtsnap(args, {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + cliSocket_});
	};
	CliResult init = onRados({"init"});
	ASSERT_EQ(init.status, 0) << init.err;

	CliResult r = onRados({"copy-snapshot", "--source-snapshot-id", source, "--source-store", storeDir_,
			       "--source-key-file", keyFile_, "--wait"});
	ASSERT_EQ(r.status, 0) << r.err;
	std::string copy = r.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(r.json().getInt("BytesTransferred"), int64_t(3 * kMiB));
	std::string target = tmp_.file("from-rados.raw");
	CliResult restored = onRados({"create-volume", "--snapshot-id", copy, "--target", target, "--format", "raw"});
	ASSERT_EQ(restored.status, 0) << restored.err;
	EXPECT_TRUE(sameImage(target, "raw", reference_));
}

} // namespace
} // namespace virtsnap::test
