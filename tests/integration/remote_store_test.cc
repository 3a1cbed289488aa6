// Stores off the host end to end: a real QEMU disk snapshotted by the
// virtsnap binary and by virtsnapd into RADOS and S3 on the throwaway Ceph
// cluster (tests/support/ceph_cluster.h), restored bit for bit; damage, a
// killed daemon, a hung OSD, and two hosts sharing one store. The reference
// images are this test's own mirror of every write, never virtsnap's output.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "cli_fixture.h"
#include "store/backend_url.h"
#include "tests/support/backends.h"
#include "tests/support/ceph_cluster.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Small, so a hung store shows within seconds and not the default 30.
constexpr int kStoreTimeoutSeconds = 3;

// A private cluster for a test that stops one of its daemons, or a skip
// (a failure under CI=true).
#define REQUIRE_PRIVATE_CLUSTER(clusterOut)                                                     \
	do {                                                                                     \
		std::string vs_why_;                                                             \
		clusterOut = CephCluster::start({.manager = false}, &vs_why_);                    \
		if (!(clusterOut)) {                                                             \
			if (inCi())                                                              \
				FAIL() << "private Ceph cluster: " << vs_why_ << " (required when CI=true)"; \
			GTEST_SKIP() << "private Ceph cluster: " << vs_why_;                     \
		}                                                                                \
	} while (0)

// One host of a remote store: its state directory, its config (the store
// timeout, S3 credentials), its QEMU with a raw mirror of the disk, and
// optionally its daemon.
struct Host {
	std::string name;
	std::string stateDir, config, socket;
	std::string reference; // the disk's bytes as this test wrote them
	std::unique_ptr<QemuInstance> vm;
	std::unique_ptr<Virtsnapd> daemon; // after vm: stopped before QEMU goes
};

class RemoteStore : public QemuCliTest
{
protected:
	RemoteStore() : QemuCliTest("vs-remote") {}

	void SetUp() override { REQUIRE_QEMU(); }

	void TearDown() override
	{
		for (auto &h : hosts_)
			if (h->daemon)
				h->daemon->stop();
	}

	// The store at `url`, made through host 0.
	void useStore(const std::string &url, const std::string &credentialsFile = "")
	{
		storeDir_ = url;
		url_ = url;
		credentials_ = credentialsFile;
		CliResult init = on(0, {"init"});
		ASSERT_EQ(init.status, 0) << init.err;
	}

	// Host `i`, made on first use.
	Host &host(size_t i)
	{
		while (hosts_.size() <= i) {
			auto h = std::make_unique<Host>();
			h->name = "host" + std::to_string(hosts_.size());
			h->stateDir = tmp_.file(h->name + "/state");
			h->config = tmp_.file(h->name + "/virtsnap.conf");
			h->socket = tmp_.file(h->name + "/d.sock");
			h->reference = tmp_.file(h->name + "/reference.raw");
			fs::create_directories(tmp_.file(h->name));
			std::ofstream conf(h->config);
			conf << "[store]\ntimeout = " << kStoreTimeoutSeconds << "\n";
			if (!credentials_.empty())
				conf << "[s3]\ncredentials-file = " << credentials_ << "\n";
			hosts_.push_back(std::move(h));
		}
		return *hosts_[i];
	}

	// Host i's QEMU on a qcow2 disk of `sizeMiB`: `sharedMiB` random MiB
	// every host has alike, then `ownMiB` random MiB of its own, then zeros.
	void startVm(size_t i, uint64_t sharedMiB, uint64_t ownMiB, uint64_t sizeMiB)
	{
		Host &h = host(i);
		{
			std::ofstream out(h.reference, std::ios::binary);
			std::vector<uint8_t> buf(kMiB);
			std::mt19937_64 shared(1), own(100 + i);
			for (uint64_t m = 0; m < sharedMiB + ownMiB; m++) {
				fillRandom(m < sharedMiB ? shared : own, buf);
				out.write(reinterpret_cast<const char *>(buf.data()), kMiB);
			}
		}
		fs::resize_file(h.reference, sizeMiB * kMiB);
		std::string disk = tmp_.file(h.name + "/disk.qcow2"), error;
		ASSERT_TRUE(convertImage(h.reference, "raw", disk, "qcow2", &error)) << error;
		QemuOptions opts;
		opts.disks = {{disk, "qcow2", "vda"}};
		opts.name = "vs-remote-" + h.name;
		h.vm = QemuInstance::start(opts, &error);
		ASSERT_TRUE(h.vm) << error;
	}

	void startDaemon(size_t i)
	{
		Host &h = host(i);
		h.daemon = std::make_unique<Virtsnapd>(VirtsnapdOptions{
			.store = url_,
			.keyFile = keyFile_,
			.socket = h.socket,
			.eventsLog = tmp_.file(h.name + "/events.jsonl"),
			.eventsDir = tmp_.file(h.name + "/events.d"),
			.tmpDir = workRoot(),
			.logFile = tmp_.file(h.name + "/virtsnapd.log"),
			.args = {"--state-dir", h.stateDir, "--config", h.config}});
		fs::create_directories(tmp_.file(h.name + "/events.d"));
		ASSERT_TRUE(h.daemon->start());
	}

	// virtsnap as host i runs it: through its daemon when one runs.
	CliResult on(size_t i, std::vector<std::string> args)
	{
		Host &h = host(i);
		args.insert(args.begin(), {"--state-dir", h.stateDir, "--config", h.config});
		return cli(args, h.daemon && h.daemon->running() ? h.socket : "");
	}

	CliResult create(size_t i, bool wait)
	{
		std::vector<std::string> args{"create-snapshot", "--qmp-socket", host(i).vm->qmpSocket(), "--disk",
					      "vda"};
		if (wait)
			args.push_back("--wait");
		return on(i, args);
	}

	Json describe(size_t i, const std::string &id)
	{
		return on(i, {"describe-snapshots", "--snapshot-id", id}).json().get("Snapshots").at(0);
	}

	// The ids host i lists.
	std::set<std::string> listedOn(size_t i, bool refresh)
	{
		std::vector<std::string> args{"describe-snapshots"};
		if (refresh)
			args.push_back("--refresh");
		CliResult r = on(i, args);
		EXPECT_EQ(r.status, 0) << r.err;
		std::set<std::string> ids;
		for (size_t k = 0; k < r.json().get("Snapshots").size(); k++)
			ids.insert(r.json().get("Snapshots").at(k).getString("SnapshotId").value_or(""));
		return ids;
	}

	std::string waitState(size_t i, const std::string &id, std::chrono::seconds timeout = 120s)
	{
		return waitWhilePending([&] { return describe(i, id).getString("State").value_or(""); }, timeout);
	}

	// The same bytes into host i's running disk (qemu-io, as a guest
	// writes) and into its reference. Random bytes when `pattern` < 0.
	void write(size_t i, uint64_t offset, uint64_t length, int pattern)
	{
		Host &h = host(i);
		mirrorWrite(*h.vm, "vda", h.reference, tmp_.file(h.name + "/source.bin"), offset, length, pattern);
	}

	std::string saveReference(size_t i, const std::string &name)
	{
		std::string path = tmp_.file(host(i).name + "/" + name);
		fs::copy_file(host(i).reference, path);
		return path;
	}

	// Restored through host `via`, compared with qemu-img against `expected`.
	void expectRestoresTo(size_t via, const std::string &id, const std::string &expected, const std::string &format)
	{
		std::string target = tmp_.file(id + "-" + std::to_string(via) + "." + format);
		fs::remove(target);
		CliResult r = on(via, {"create-volume", "--snapshot-id", id, "--target", target, "--format", format});
		ASSERT_EQ(r.status, 0) << r.err;
		EXPECT_TRUE(sameImage(target, format, expected)) << id;
	}

	// Pack objects and their indexes, name to size, as the store has them.
	std::map<std::string, uint64_t> packObjects()
	{
		std::map<std::string, uint64_t> out;
		auto listed = backend_->list("packs/", [&](const store::ObjectInfo &o) { out[o.name] = o.size; });
		EXPECT_TRUE(listed) << listed.error().toString();
		return out;
	}

	uint64_t packBytes()
	{
		uint64_t total = 0;
		for (auto &[name, size] : packObjects())
			if (name.ends_with(".pack"))
				total += size;
		return total;
	}

	// Blocks until a pack appears that `before` does not have: a transfer
	// is under way and has committed a part of its data.
	bool waitForNewPack(const std::map<std::string, uint64_t> &before)
	{
		for (auto deadline = Clock::now() + 60s; Clock::now() < deadline; std::this_thread::sleep_for(10ms))
			for (auto &[name, size] : packObjects())
				if (name.ends_with(".pack") && !before.count(name))
					return true;
		return false;
	}

	// Host 0's snapshot s1 (its reference saved as ref1), then 80 MiB of
	// new data and a second snapshot s2, returned once s2's first pack is
	// in the store and the rest is still on its way: for tests that stop
	// a daemon or the store mid-upload. `before` is the packs of s1.
	struct MidUpload {
		std::string s1, ref1, s2;
		std::map<std::string, uint64_t> before;
	};
	void startSecondUpload(MidUpload &u)
	{
		ASSERT_NO_FATAL_FAILURE(startVm(0, 0, 8, 128));
		ASSERT_NO_FATAL_FAILURE(startDaemon(0));
		CliResult first = create(0, true);
		ASSERT_EQ(first.status, 0) << first.err;
		u.s1 = first.json().getString("SnapshotId").value_or("");
		u.ref1 = saveReference(0, "ref1.raw");
		u.before = packObjects();
		// Three packs' worth: the first is stored well before the last.
		ASSERT_NO_FATAL_FAILURE(write(0, 16 * kMiB, 80 * kMiB, -1));
		CliResult second = create(0, false);
		ASSERT_EQ(second.status, 0) << second.err;
		u.s2 = second.json().getString("SnapshotId").value_or("");
		ASSERT_TRUE(waitForNewPack(u.before)) << "no pack of the second snapshot appeared";
	}

	// gc with no grace, through host i. RADOS keeps object times in whole
	// seconds, and gc spares what is not older than the grace: an object
	// of this second would be spared, so the second goes by first.
	CliResult gcNow(size_t i)
	{
		std::this_thread::sleep_for(1100ms);
		return on(i, {"gc", "--grace-seconds", "0"});
	}

	bool hasManifest(const std::string &id) { return bool(backend_->stat("snapshots/" + id + ".manifest")); }

	// Full, then incremental after writes through QEMU, each restored
	// bit-exact.
	void fullThenIncremental()
	{
		ASSERT_NO_FATAL_FAILURE(startVm(0, 0, 32, 64));
		Json full = create(0, true).json();
		std::string s1 = full.getString("SnapshotId").value_or("");
		std::string ref1 = saveReference(0, "ref1.raw");
		EXPECT_EQ(full.getString("State"), "completed");
		EXPECT_EQ(full.getString("CaptureMode"), "full");
		EXPECT_TRUE(hasManifest(s1)) << "the snapshot is not in the remote store";

		// Scattered, some off the 64 KiB grid, one zeroing random data, one
		// in the never-written half.
		std::mt19937_64 rng(7);
		for (int k = 0; k < 8; k++)
			write(0, (rng() % (64 * kMiB / 4096 - 16)) * 4096, 4096 * (1 + rng() % 8), 0x10 + k);
		write(0, 40 * kMiB + 123 * 512, 70000, 0xee);
		write(0, kMiB, 64 * 1024, 0x00);
		Json incr = create(0, true).json();
		std::string s2 = incr.getString("SnapshotId").value_or("");
		std::string ref2 = saveReference(0, "ref2.raw");
		EXPECT_EQ(incr.getString("CaptureMode"), "incremental");
		EXPECT_EQ(incr.getString("ParentSnapshotId"), s1);
		EXPECT_LT(incr.getInt("BytesAdded").value_or(0) * 20, full.getInt("BytesAdded").value_or(0));

		expectRestoresTo(0, s1, ref1, "qcow2");
		expectRestoresTo(0, s2, ref2, "raw");
		CliResult verified = on(0, {"verify"});
		EXPECT_EQ(verified.status, 0) << verified.err << verified.out;
	}

	std::string url_, credentials_;
	std::unique_ptr<store::Backend> backend_; // the test's own view of the store
	std::vector<std::unique_ptr<Host>> hosts_;
};

TEST_F(RemoteStore, FullThenIncrementalIntoRadosRestoreBitExact)
{
	std::string url;
	REQUIRE_BACKEND("rados", backend_, url);
	ASSERT_NO_FATAL_FAILURE(useStore(url));
	fullThenIncremental();
}

TEST_F(RemoteStore, FullThenIncrementalIntoS3RestoreBitExact)
{
	std::string url;
	REQUIRE_BACKEND("s3", backend_, url);
	ASSERT_NO_FATAL_FAILURE(useStore(url, backendNamed("s3")->settings.s3CredentialsFile));
	fullThenIncremental();
}

TEST_F(RemoteStore, FlippedByteInARadosPackFailsVerifyAndRestore)
{
	REQUIRE_TOOL("rados");
	std::string url;
	REQUIRE_BACKEND("rados", backend_, url);
	ASSERT_NO_FATAL_FAILURE(useStore(url));
	ASSERT_NO_FATAL_FAILURE(startVm(0, 0, 16, 64));
	std::string s1 = create(0, true).json().getString("SnapshotId").value_or("");
	ASSERT_EQ(on(0, {"verify"}).status, 0);

	// The largest pack, damaged with the rados tool, not through virtsnap.
	std::string pack;
	uint64_t largest = 0;
	for (auto &[name, size] : packObjects())
		if (name.ends_with(".pack") && size > largest)
			pack = name, largest = size;
	ASSERT_FALSE(pack.empty());
	auto where = store::parseStoreUrl(url);
	ASSERT_TRUE(where);
	std::vector<std::string> rados{"rados", "-c", where->conf, "-p", where->pool, "-N", where->radosNamespace};
	std::string copy = tmp_.file("pack.bin"), out;
	auto radosDo = [&](std::vector<std::string> args) {
		args.insert(args.begin(), rados.begin(), rados.end());
		return runCommand(args, &out);
	};
	ASSERT_EQ(radosDo({"get", pack, copy}), 0) << out;
	{
		std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
		f.seekg(std::streamoff(largest / 2));
		char b = char(f.get() ^ 0x01);
		f.seekp(std::streamoff(largest / 2));
		f.put(b);
	}
	ASSERT_EQ(radosDo({"put", pack, copy}), 0) << out;

	CliResult verified = on(0, {"verify"});
	EXPECT_EQ(verified.status, 1) << verified.out;
	EXPECT_NE(verified.err.find("StoreCorrupted"), std::string::npos) << verified.err;
	EXPECT_NE(verified.err.find(s1), std::string::npos) << verified.err;
	EXPECT_EQ(std::count(verified.err.begin(), verified.err.end(), '\n'), 1) << verified.err;
	std::string packId = fs::path(pack).stem().string();
	EXPECT_NE(verified.out.find(packId), std::string::npos) << "the damaged pack is not named: " << verified.out;

	std::string target = tmp_.file("corrupt.raw");
	CliResult restored = on(0, {"create-volume", "--snapshot-id", s1, "--target", target, "--format", "raw"});
	EXPECT_EQ(restored.status, 1);
	EXPECT_NE(restored.err.find("StoreCorrupted"), std::string::npos) << restored.err;
	EXPECT_NE(restored.err.find("authentication failed"), std::string::npos) << restored.err;
	EXPECT_EQ(std::count(restored.err.begin(), restored.err.end(), '\n'), 1) << restored.err;
	EXPECT_FALSE(fs::exists(target));
}

TEST_F(RemoteStore, DaemonKilledMidUploadLeavesGarbageThatGcRemoves)
{
	std::string url;
	REQUIRE_BACKEND("rados", backend_, url);
	ASSERT_NO_FATAL_FAILURE(useStore(url));
	MidUpload u;
	ASSERT_NO_FATAL_FAILURE(startSecondUpload(u));
	const auto &[s1, ref1, s2, before] = u;
	// Killed once the first of its three packs is stored.
	host(0).daemon->stop(SIGKILL);
	ASSERT_FALSE(hasManifest(s2)) << "the upload finished before the kill: the test proved nothing";
	auto killed = packObjects();
	EXPECT_GT(killed.size(), before.size()) << "the killed upload left nothing to collect";

	ASSERT_TRUE(host(0).daemon->start());
	Json snap = describe(0, s2);
	EXPECT_EQ(snap.getString("State"), "error");
	EXPECT_NE(snap.getString("StateMessage").value_or("").find("interrupted"), std::string::npos)
		<< snap.getString("StateMessage").value_or("");
	CliResult gc = gcNow(0);
	ASSERT_EQ(gc.status, 0) << gc.err;
	EXPECT_EQ(packObjects(), before) << "gc left garbage or removed what s1 needs";
	CliResult verified = on(0, {"verify"});
	EXPECT_EQ(verified.status, 0) << verified.err << verified.out;
	expectRestoresTo(0, s1, ref1, "raw");
	// The next snapshot covers what the killed one missed.
	CliResult third = create(0, true);
	ASSERT_EQ(third.status, 0) << third.err;
	expectRestoresTo(0, third.json().getString("SnapshotId").value_or(""), host(0).reference, "raw");
}

TEST_F(RemoteStore, PausedOsdFailsTheSnapshotWithinTheTimeoutAndBreaksNothing)
{
	std::unique_ptr<CephCluster> cluster;
	REQUIRE_PRIVATE_CLUSTER(cluster);
	std::string why;
	ASSERT_TRUE(cluster->createPool("virtsnap", &why)) << why;
	std::string url = radosUrl("virtsnap", "", cluster->confPath());
	auto backend = store::openBackend(url);
	ASSERT_TRUE(backend) << backend.error().toString();
	backend_ = std::move(*backend);
	ASSERT_NO_FATAL_FAILURE(useStore(url));
	MidUpload u;
	ASSERT_NO_FATAL_FAILURE(startSecondUpload(u));
	const auto &[s1, ref1, s2, before] = u;
	ASSERT_TRUE(cluster->pause("osd.0", &why)) << why;
	auto paused = Clock::now();
	struct Resume {
		CephCluster *cluster;
		~Resume()
		{
			std::string ignored;
			cluster->resume("osd.0", &ignored);
		}
	} resume{cluster.get()};

	std::string state = waitState(0, s2, 60s);
	auto took = since(paused);
	std::printf("the snapshot ended %s %.1f s after the OSD stopped\n", state.c_str(), took.count() / 1000.0);
	EXPECT_EQ(state, "error");
	std::string message = describe(0, s2).getString("StateMessage").value_or("");
	std::printf("its StateMessage: %s\n", message.c_str());
	EXPECT_NE(message.find("rados://virtsnap"), std::string::npos) << message;
	EXPECT_NE(message.find("within " + std::to_string(kStoreTimeoutSeconds) + " s"), std::string::npos) << message;
	// A few requests may each wait out the timeout (the write, then the
	// lease's release), never the default 30 s.
	EXPECT_LT(took, std::chrono::seconds(6 * kStoreTimeoutSeconds));

	// The store still silent, the host's own listing (the error above
	// among it) stays readable: once the listing is due to look at the
	// store again (10 s), it gives up within the timeout and shows what
	// the host knows. Only --refresh, which asks for the store, fails.
	std::this_thread::sleep_for(11s);
	auto asked = Clock::now();
	EXPECT_EQ(listedOn(0, false), (std::set<std::string>{s1, s2}));
	EXPECT_LT(since(asked), std::chrono::seconds(kStoreTimeoutSeconds + 3));
	CliResult refreshed = on(0, {"describe-snapshots", "--refresh"});
	EXPECT_EQ(refreshed.status, 1);
	EXPECT_NE(refreshed.err.find("StoreUnavailable"), std::string::npos) << refreshed.err;

	ASSERT_TRUE(cluster->resume("osd.0", &why)) << why;
	CliResult verified = on(0, {"verify"});
	EXPECT_EQ(verified.status, 0) << verified.err << verified.out;
	expectRestoresTo(0, s1, ref1, "raw");
	CliResult gc = gcNow(0);
	EXPECT_EQ(gc.status, 0) << gc.err;
	EXPECT_EQ(packObjects(), before) << "gc left what the failed snapshot wrote";
	CliResult third = create(0, true);
	ASSERT_EQ(third.status, 0) << third.err;
	expectRestoresTo(0, third.json().getString("SnapshotId").value_or(""), host(0).reference, "raw");
}

TEST_F(RemoteStore, TwoDaemonsShareOneRadosStore)
{
	std::string url;
	REQUIRE_BACKEND("rados", backend_, url);
	ASSERT_NO_FATAL_FAILURE(useStore(url));
	// 24 MiB both disks have alike, then 8 MiB each of their own.
	ASSERT_NO_FATAL_FAILURE(startVm(0, 24, 8, 64));
	ASSERT_NO_FATAL_FAILURE(startVm(1, 24, 8, 64));
	ASSERT_NO_FATAL_FAILURE(startDaemon(0));
	ASSERT_NO_FATAL_FAILURE(startDaemon(1));

	CliResult a1 = create(0, true);
	ASSERT_EQ(a1.status, 0) << a1.err;
	uint64_t afterA1 = packBytes();

	// At the same time: B's first (full) snapshot and A's next one.
	ASSERT_NO_FATAL_FAILURE(write(0, 40 * kMiB, 2 * kMiB, -1));
	CliResult b1 = create(1, false), a2 = create(0, false);
	ASSERT_EQ(b1.status, 0) << b1.err;
	ASSERT_EQ(a2.status, 0) << a2.err;
	std::string idB1 = b1.json().getString("SnapshotId").value_or("");
	std::string idA2 = a2.json().getString("SnapshotId").value_or("");
	std::string refA2 = saveReference(0, "refA2.raw");
	EXPECT_EQ(waitState(1, idB1), "completed");
	EXPECT_EQ(waitState(0, idA2), "completed");

	// B stored its own 8 MiB, not the 24 MiB A had stored already.
	int64_t bAdded = describe(1, idB1).getInt("BytesAdded").value_or(-1);
	EXPECT_GT(bAdded, int64_t(8 * kMiB));
	EXPECT_LT(bAdded, int64_t(10 * kMiB)) << "the data both disks share was stored twice";
	uint64_t grown = packBytes() - afterA1;
	EXPECT_LT(grown, 13 * kMiB) << "B's 8 MiB and A's 2 MiB took " << grown << " bytes";

	// B's listing learns what A makes on --refresh: A3 is made after one,
	// well within the 10 s after which B would look by itself.
	std::string idA1 = a1.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(listedOn(1, true), (std::set<std::string>{idA1, idA2, idB1}));
	CliResult a3 = create(0, true);
	ASSERT_EQ(a3.status, 0) << a3.err;
	std::string idA3 = a3.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(listedOn(1, true), (std::set<std::string>{idA1, idA2, idA3, idB1}));
	// And B finds one by id at once, without a --refresh.
	CliResult a4 = create(0, true);
	ASSERT_EQ(a4.status, 0) << a4.err;
	std::string idA4 = a4.json().getString("SnapshotId").value_or("");
	Json seen = describe(1, idA4);
	EXPECT_EQ(seen.getString("SnapshotId"), idA4);
	EXPECT_EQ(seen.getString("State"), "completed");

	expectRestoresTo(1, idA2, refA2, "raw");
	expectRestoresTo(0, idB1, host(1).reference, "raw");
	CliResult verified = on(1, {"verify"});
	EXPECT_EQ(verified.status, 0) << verified.err << verified.out;
}

} // namespace
} // namespace virtsnap::test
