// Instance snapshots on a real guest with a real qemu-guest-agent: one
// point in time across disks, the freeze, the agent failing, sets failing;
// and on a QEMU with no guest (SetTest): 40 disks and not 41, a disk failing
// mid-transfer, disks copied side by side, a suspended instance.
// The guest (tests/guest) appends "record N" to a log on vdb and fsyncs it,
// then the same on vdc; a consistent capture never has record N on vdc
// without it on vdb. Restored disks are checked offline with e2fsck and
// debugfs, which are independent of the code under test.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "cli_fixture.h"
#include "engine/restore.h"
#include "engine/snapshot_engine.h"
#include "hypervisor/qemu_driver.h"
#include "test_guest.h"
#include "qmp/guest_agent_client.h"
#include "tests/support/qemu_instance.h"
#include "tests/support/qemu_residue.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;
using Clock = std::chrono::steady_clock;

// Sets of a QEMU that runs no guest: enough wherever the guest need not act.
class SetTest : public QemuCliTest
{
protected:
	using QemuCliTest::QemuCliTest;

	void SetUp() override
	{
		REQUIRE_QEMU();
		ASSERT_EQ(cli({"init"}).status, 0);
	}

	// QEMU with these disks and no guest: its firmware then honours
	// bootindex without a kernel.
	void startGuestless(std::vector<DiskSpec> disks)
	{
		QemuOptions opts;
		opts.disks = std::move(disks);
		opts.name = "vs-set";
		std::string error;
		vm_ = QemuInstance::start(opts, &error);
		ASSERT_TRUE(vm_) << error;
	}

	// Without `wait`, a daemon answers once the point in time is taken.
	CliResult createSnapshots(std::vector<std::string> extra, bool wait = true)
	{
		std::vector<std::string> args{"create-snapshots", "--qmp-socket", vm_->qmpSocket()};
		if (wait)
			args.push_back("--wait");
		if (!vm_->guestAgentSocket().empty())
			args.insert(args.end(), {"--qga-socket", vm_->guestAgentSocket()});
		args.insert(args.end(), extra.begin(), extra.end());
		return cli(args);
	}

	std::string restoreRaw(const std::string &snapshotId)
	{
		std::string target = tmp_.file(snapshotId + ".raw");
		CliResult r = cli({"create-volume", "--snapshot-id", snapshotId, "--target", target, "--format", "raw"});
		EXPECT_EQ(r.status, 0) << r.err;
		return target;
	}

	std::string runState()
	{
		auto status = vm_->control().execute("query-status");
		return status ? status->getString("status").value_or("") : "";
	}

	Json listSnapshots() { return cli({"describe-snapshots"}).json().get("Snapshots"); }

	// `count` qcow2 disks d0, d1, ... of 4 MiB, each with random data of
	// its own at 1 MiB; blkdebug options (DiskSpec::blkdebug) for some.
	std::vector<DiskSpec> makeDisks(int count, const std::map<int, std::string> &blkdebug = {})
	{
		constexpr size_t kSize = 4 << 20, kDataAt = 1 << 20;
		std::vector<DiskSpec> disks;
		for (int i = 0; i < count; i++) {
			std::vector<uint8_t> data(kSize / 16);
			std::mt19937_64 rng(uint64_t(i) + 1);
			fillRandom(rng, data);
			std::string raw = reference(i);
			{
				std::ofstream out(raw, std::ios::binary);
				out.seekp(kDataAt).write(reinterpret_cast<const char *>(data.data()), std::streamsize(data.size()));
			}
			fs::resize_file(raw, kSize);
			std::string path = tmp_.file("d" + std::to_string(i) + ".qcow2"), error;
			EXPECT_TRUE(convertImage(raw, "raw", path, "qcow2", &error)) << error;
			DiskSpec disk{path, "qcow2", "d" + std::to_string(i)};
			if (auto rules = blkdebug.find(i); rules != blkdebug.end())
				disk.blkdebug = rules->second;
			disks.push_back(disk);
		}
		return disks;
	}

	// The raw image that disk i of makeDisks() starts as.
	std::string reference(int disk) { return tmp_.file("d" + std::to_string(disk) + ".raw"); }

	// Sends the commands that follow to a virtsnapd of this test's own.
	void startDaemon()
	{
		fs::create_directories(tmp_.file("events.d"));
		cliSocket_ = tmp_.file("virtsnapd.sock");
		daemon_ = std::make_unique<Virtsnapd>(daemonOptions(cliSocket_));
		ASSERT_TRUE(daemon_->start());
	}

	Json describe(const std::string &snapshotId)
	{
		return cli({"describe-snapshots", "--snapshot-id", snapshotId}).json().get("Snapshots").at(0);
	}

	// The daemon's multi-volume completion events for the set `setId`.
	std::vector<Json> completionEvents(const std::string &setId)
	{
		std::vector<Json> found;
		for (const std::string &line : lines(readFile(tmp_.file("events/events.jsonl")))) {
			auto event = Json::parse(line);
			if (event && event->getString("detail-type") == "EBS Multi-Volume Snapshots Completion Status" &&
			    event->get("detail").getString("request-id") == setId)
				found.push_back(*event);
		}
		return found;
	}

	// ACPI S3 as a guest asks for it: SLP_TYP 1 with SLP_EN into PM1a_CNT,
	// at 0x604 once the firmware has put the PM registers at 0x600.
	void suspendToRam()
	{
		for (auto until = Clock::now() + std::chrono::seconds(10); Clock::now() < until;) {
			ASSERT_TRUE(vm_->hmp("o /w 0x604 0x2400"));
			if (runState() == "suspended")
				return;
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		}
		FAIL() << "QEMU did not suspend: " << runState();
	}

	// Declared after vm_ (of the base): stopped before QEMU goes.
	std::unique_ptr<Virtsnapd> daemon_;
};

class InstanceTest : public SetTest
{
protected:
	InstanceTest() : SetTest("vs-guest") {}

	void SetUp() override
	{
		ASSERT_NO_FATAL_FAILURE(SetTest::SetUp());
		REQUIRE_TOOL("e2fsck");
		REQUIRE_TOOL("debugfs");
		REQUIRE_TOOL("mkfs.ext4");
		std::string error;
		cache_ = guestCache(&error);
		ASSERT_TRUE(error.empty()) << error;
	}

	// With `guestOs` false, QEMU runs no guest at all: enough for tests of
	// disk selection.
	void boot(const std::string &kernelArgs = "", int bootIndexOf = -1, bool guestOs = true)
	{
		QemuOptions opts;
		for (int i = 0; i < 3; i++) {
			std::string id = std::string("vd") + char('a' + i);
			std::string path = tmp_.file(id + ".qcow2");
			std::string out;
			ASSERT_EQ(runCommand({sourceDir() + "/tests/guest/make-ext4-disk", path, "64M", "qcow2"}, &out), 0)
				<< out;
			opts.disks.push_back({path, "qcow2", id, i == bootIndexOf ? 0 : -1});
		}
		if (!guestOs) {
			startGuestless(opts.disks);
			return;
		}
		opts.name = "vs-guest";
		opts.memoryMb = 256;
		opts.guestAgent = true;
		opts.kernel = cache_ + "/vmlinux";
		opts.initrd = cache_ + "/initrd.img";
		opts.append = "console=ttyS0 panic=-1 quiet virtsnap.workload=records " + kernelArgs;
		std::string error;
		vm_ = QemuInstance::start(opts, &error);
		ASSERT_TRUE(vm_) << error;
		ASSERT_TRUE(waitSerial("VIRTSNAP-GUEST-READY", std::chrono::seconds(180)))
			<< "guest did not come up:\n"
			<< serial();
	}

	std::string serial() { return readFile(vm_->serialLogPath()); }

	bool waitSerial(const std::string &marker, std::chrono::seconds timeout)
	{
		auto deadline = Clock::now() + timeout;
		while (Clock::now() < deadline) {
			if (serial().find(marker) != std::string::npos)
				return true;
			if (!vm_->isRunning())
				return false;
			std::this_thread::sleep_for(std::chrono::milliseconds(200));
		}
		return false;
	}

	// e2fsck -fn's exit status on the image as restored.
	static int fsckReadOnly(const std::string &image, std::string *out)
	{
		return runCommand({"e2fsck", "-fn", image}, out);
	}

	// The record numbers of /log.txt, after replaying the journal as a
	// mount would.
	static std::vector<long> records(const std::string &image)
	{
		std::string out;
		runCommand({"e2fsck", "-fy", image}, &out);
		runCommand({"debugfs", "-R", "cat /log.txt", image}, &out);
		std::vector<long> n;
		static const std::regex line("^record ([0-9]+)$");
		std::istringstream in(out);
		for (std::string l; std::getline(in, l);) {
			std::smatch m;
			if (std::regex_match(l, m, line))
				n.push_back(std::stol(m[1]));
		}
		return n;
	}

	static bool isSequence(const std::vector<long> &n)
	{
		for (size_t i = 0; i < n.size(); i++)
			if (n[i] != long(i) + 1)
				return false;
		return true;
	}

	std::string freezeStatus()
	{
		auto agent = qmp::GuestAgentClient::connect(vm_->guestAgentSocket(), std::chrono::milliseconds(20000));
		if (!agent)
			return "unreachable: " + agent.error().desc;
		auto status = (*agent)->execute("guest-fsfreeze-status");
		return status ? status->asString() : "error: " + status.error().desc;
	}

	std::set<std::string> completedSnapshots()
	{
		std::set<std::string> ids;
		CliResult r = cli({"describe-snapshots", "--filter", "Name=status,Values=completed"});
		EXPECT_EQ(r.status, 0) << r.err;
		Json list = r.json().get("Snapshots");
		for (size_t i = 0; i < list.size(); i++)
			ids.insert(list.at(i).getString("SnapshotId").value_or(""));
		return ids;
	}

	std::string cache_;
};

TEST_F(InstanceTest, OnePointInTimeAcrossDisksWithAndWithoutFreeze)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	std::vector<int64_t> freezeMs;
	long lastB = 0;
	for (int round = 0; round < 10; round++) {
		bool freeze = round % 2 == 1;
		std::this_thread::sleep_for(std::chrono::milliseconds(300));
		CliResult r = createSnapshots({"--quiesce", freeze ? "try" : "off"});
		ASSERT_EQ(r.status, 0) << r.err;
		auto set = byDisk(r.json());
		ASSERT_EQ(set.size(), 3u) << r.out;
		for (auto &[disk, snap] : set) {
			EXPECT_EQ(snap.getString("State"), "completed") << disk;
			EXPECT_EQ(snap.getString("ConsistencyLevel"), freeze ? "application" : "crash") << disk;
			EXPECT_EQ(snap.getString("SnapshotSetId"), set["vda"].getString("SnapshotSetId"));
		}
		if (freeze) {
			int64_t ms = set["vdb"].getInt("FreezeMillis").value_or(-1);
			EXPECT_GT(ms, 0);
			freezeMs.push_back(ms);
		}

		std::string b = restoreRaw(set["vdb"].getString("SnapshotId").value_or(""));
		std::string c = restoreRaw(set["vdc"].getString("SnapshotId").value_or(""));
		if (freeze) {
			for (const std::string &image : {b, c}) {
				std::string out;
				EXPECT_EQ(fsckReadOnly(image, &out), 0) << "frozen snapshot not clean:\n" << out;
			}
		}
		std::vector<long> onB = records(b), onC = records(c);
		EXPECT_TRUE(isSequence(onB)) << "vdb log is not 1..N";
		EXPECT_TRUE(isSequence(onC)) << "vdc log is not 1..N";
		EXPECT_LE(onC.size(), onB.size()) << "round " << round << ": record " << onC.size()
						   << " on vdc without it on vdb";
		EXPECT_LE(onB.size(), onC.size() + 1) << "round " << round;
		EXPECT_GE(long(onB.size()), lastB) << "time went backwards";
		lastB = long(onB.size());
		fs::remove(b);
		fs::remove(c);
	}
	EXPECT_GT(lastB, 0) << "the workload wrote nothing";
	EXPECT_EQ(freezeStatus(), "thawed");
	EXPECT_EQ(runState(), "running");

	int64_t sum = 0, worst = 0;
	for (int64_t ms : freezeMs) {
		sum += ms;
		worst = std::max(worst, ms);
	}
	std::printf("freeze window over %zu sets: mean %lld ms, max %lld ms\n", freezeMs.size(),
		    (long long)(sum / std::max<size_t>(1, freezeMs.size())), (long long)worst);
	RecordProperty("freeze_ms_mean", int(sum / std::max<size_t>(1, freezeMs.size())));
	RecordProperty("freeze_ms_max", int(worst));
}

TEST_F(InstanceTest, AbsentAgentFallsBackOrFailsWithinTheTimeout)
{
	ASSERT_NO_FATAL_FAILURE(boot("virtsnap.agent=0"));
	auto started = Clock::now();
	CliResult tried = createSnapshots({"--quiesce", "try", "--freeze-timeout", "2"});
	double secs = std::chrono::duration<double>(Clock::now() - started).count();
	ASSERT_EQ(tried.status, 0) << tried.err;
	EXPECT_LT(secs, 2 + 8.0) << "try did not give up on the agent in time";
	EXPECT_NE(tried.err.find("warning"), std::string::npos) << tried.err;
	for (auto &[disk, snap] : byDisk(tried.json())) {
		EXPECT_EQ(snap.getString("ConsistencyLevel"), "crash") << disk;
		EXPECT_NE(snap.getString("QuiesceNote").value_or("").find("guest agent"), std::string::npos);
	}

	std::set<std::string> bitmapsBefore = bitmaps();
	started = Clock::now();
	CliResult required = createSnapshots({"--quiesce", "required", "--freeze-timeout", "2"});
	secs = std::chrono::duration<double>(Clock::now() - started).count();
	EXPECT_EQ(required.status, 1);
	EXPECT_LT(secs, 2 + 8.0);
	EXPECT_NE(required.err.find("guest agent"), std::string::npos) << required.err;
	EXPECT_NE(required.err.find(vm_->guestAgentSocket()), std::string::npos) << required.err;
	EXPECT_EQ(std::count(required.err.begin(), required.err.end(), '\n'), 1) << required.err;
	EXPECT_EQ(bitmaps(), bitmapsBefore);
	EXPECT_EQ(runState(), "running");
	EXPECT_EQ(listSnapshots().size(), 3u) << "the refused set left snapshots";
}

TEST_F(InstanceTest, HungAgentThatWakesUpLaterLeavesTheGuestThawed)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	{
		// The agent stops itself for 8 s through a child it spawns.
		auto agent = qmp::GuestAgentClient::connect(vm_->guestAgentSocket(), std::chrono::milliseconds(20000));
		ASSERT_TRUE(agent) << agent.error().desc;
		auto spawned = (*agent)->execute(
			"guest-exec", guestExecArguments("p=$(pidof qemu-ga); kill -STOP $p; sleep 8; kill -CONT $p"));
		ASSERT_TRUE(spawned) << spawned.error().desc;
	}
	std::this_thread::sleep_for(std::chrono::milliseconds(500));

	auto started = Clock::now();
	CliResult r = createSnapshots({"--quiesce", "try", "--freeze-timeout", "2"});
	double secs = std::chrono::duration<double>(Clock::now() - started).count();
	ASSERT_EQ(r.status, 0) << r.err;
	EXPECT_LT(secs, 2 + 8.0);
	for (auto &[disk, snap] : byDisk(r.json()))
		EXPECT_EQ(snap.getString("ConsistencyLevel"), "crash") << disk;

	// When it wakes up it runs the queued freeze, then the queued thaw.
	std::this_thread::sleep_for(std::chrono::seconds(9));
	EXPECT_EQ(freezeStatus(), "thawed");
	EXPECT_EQ(runState(), "running");
}

TEST_F(InstanceTest, SignalsAtAnyMomentLeaveTheGuestThawedAndQemuClean)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	QemuResidue clean = residue();
	int interrupted = 0;
	// From before the freeze to past the transfer (a set of these disks
	// takes about 300 ms), in steps finer than the freeze window.
	for (int ms = 0; ms <= 600; ms += 20) {
		int sig = ms % 40 == 0 ? SIGTERM : SIGINT;
		std::vector<std::string> args{"--store", storeDir_, "--key-file", keyFile_, "create-snapshots",
					      "--qmp-socket", vm_->qmpSocket(), "--qga-socket", vm_->guestAgentSocket(),
					      "--quiesce", "try", "--wait"};
		CliResult r = runVirtsnap(args, {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + tmp_.file("none.sock")},
					  sig, ms);
		// A signal that lands before the handlers are installed kills the
		// process before it touched anything; any later one must unwind.
		if (r.status == 1) {
			interrupted++;
			EXPECT_NE(r.err.find("interrupted"), std::string::npos) << ms << " ms: " << r.err;
		} else if (r.status != 0) {
			EXPECT_EQ(r.status, 128 + sig) << ms << " ms: " << r.err;
			EXPECT_TRUE(r.out.empty()) << ms << " ms";
		}
		EXPECT_EQ(freezeStatus(), "thawed") << "after a signal at " << ms << " ms";
		// A run that completed leaves its snapshots' bitmaps; nothing else
		// of any run may stay.
		QemuResidue now = residue(), expected = clean;
		std::set<std::string> completed = completedSnapshots();
		for (const std::string &b : now.bitmaps)
			if (completed.count(b))
				expected.bitmaps.push_back(b);
		EXPECT_EQ(now, expected) << "after a signal at " << ms << " ms";
		EXPECT_TRUE(fs::is_empty(workRoot())) << "work directory left after a signal at " << ms << " ms";
		// Only completed snapshots' bitmaps remain: one per disk at most.
		EXPECT_LE(bitmaps().size(), 3u) << ms << " ms";
	}
	EXPECT_GE(interrupted, 5) << "too few runs were interrupted mid-way: the test proved little";
	EXPECT_EQ(runState(), "running");
}

TEST_F(InstanceTest, ExclusionsChooseTheDisks)
{
	ASSERT_NO_FATAL_FAILURE(boot("", 2, false)); // vdc carries bootindex 0: it is the boot volume
	CliResult noBoot = createSnapshots({"--quiesce", "off", "--exclude-boot-volume"});
	ASSERT_EQ(noBoot.status, 0) << noBoot.err;
	auto set = byDisk(noBoot.json());
	EXPECT_EQ(set.size(), 2u);
	EXPECT_TRUE(set.count("vda") && set.count("vdb") && !set.count("vdc")) << noBoot.out;

	CliResult noVdb = createSnapshots({"--quiesce", "off", "--exclude-disk", "vdb"});
	ASSERT_EQ(noVdb.status, 0) << noVdb.err;
	set = byDisk(noVdb.json());
	EXPECT_TRUE(set.size() == 2 && set.count("vda") && set.count("vdc")) << noVdb.out;

	CliResult none = createSnapshots(
		{"--quiesce", "off", "--exclude-disk", "vda", "--exclude-disk", "vdb", "--exclude-boot-volume"});
	EXPECT_EQ(none.status, 1);
	EXPECT_NE(none.err.find("InvalidParameterValue"), std::string::npos) << none.err;

	CliResult unknown = createSnapshots({"--quiesce", "off", "--exclude-disk", "vdq"});
	EXPECT_EQ(unknown.status, 1);
	EXPECT_NE(unknown.err.find("vdq"), std::string::npos) << unknown.err;
}

TEST_F(InstanceTest, ADiskThatFailsFailsTheWholeSetAndLeavesNoBitmaps)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	// Another tool's job holds vdc: the transaction cannot start a backup
	// on it, so the set cannot take its point in time.
	Json target = Json::object();
	target.set("driver", Json::string("null-co"));
	target.set("node-name", Json::string("busy-target"));
	target.set("size", Json::integer(64 << 20));
	ASSERT_TRUE(vm_->control().execute("blockdev-add", target));
	Json job = Json::object();
	job.set("device", Json::string("fmt-vdc"));
	job.set("target", Json::string("busy-target"));
	job.set("sync", Json::string("full"));
	job.set("speed", Json::integer(1));
	job.set("job-id", Json::string("busy-job"));
	ASSERT_TRUE(vm_->control().execute("blockdev-backup", job));

	CliResult r = createSnapshots({"--quiesce", "try"});
	EXPECT_EQ(r.status, 1);
	auto set = byDisk(r.json());
	ASSERT_EQ(set.size(), 3u) << r.out;
	for (auto &[disk, snap] : set) {
		EXPECT_EQ(snap.getString("State"), "error") << disk;
		EXPECT_NE(snap.getString("StateMessage").value_or("").find("disk vdc"), std::string::npos)
			<< snap.getString("StateMessage").value_or("");
	}
	// The test's own job on vdc has an anonymous bitmap: not the set's.
	EXPECT_EQ(bitmaps(AnonymousBitmaps::Ignored), std::set<std::string>{});
	// As on EBS, they stay listed in error; none has a manifest.
	Json listed = listSnapshots();
	EXPECT_EQ(listed.size(), 3u);
	for (size_t i = 0; i < listed.size(); i++) {
		EXPECT_EQ(listed.at(i).getString("State"), "error");
		EXPECT_FALSE(fs::exists(storeDir_ + "/snapshots/" +
					listed.at(i).getString("SnapshotId").value_or("") + ".manifest"));
	}
	EXPECT_EQ(freezeStatus(), "thawed");
}

// Tags copied from volumes, hibernation refused, and product codes carried
// from the registered instance into its snapshots and the volumes made
// from them, and by a file made from them into the volumes and snapshots
// of another instance it is attached to: one boot for the instance
// attributes, and a QEMU without a guest for the file.
TEST_F(InstanceTest, CopyTagsFromSourceHibernationAndProductCodes)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	CliResult first = createSnapshots({"--quiesce", "off"});
	ASSERT_EQ(first.status, 0) << first.err;
	std::string vdbVolume = byDisk(first.json())["vdb"].getString("VolumeId").value_or("");
	CliResult tagged = cli({"create-tags", "--resource", vdbVolume, "--tag", "team=db"});
	ASSERT_EQ(tagged.status, 0) << tagged.err;

	CliResult second = createSnapshots({"--quiesce", "off", "--copy-tags-from-source", "--tag", "run=2"});
	ASSERT_EQ(second.status, 0) << second.err;
	auto set = byDisk(second.json());
	auto tagsOf = [](const Json &snap) {
		std::set<std::string> tags;
		Json t = snap.get("Tags");
		for (size_t i = 0; i < t.size(); i++)
			tags.insert(t.at(i).getString("Key").value_or("") + "=" + t.at(i).getString("Value").value_or(""));
		return tags;
	};
	EXPECT_EQ(tagsOf(set["vdb"]), (std::set<std::string>{"run=2", "team=db"}));
	EXPECT_EQ(tagsOf(set["vda"]), (std::set<std::string>{"run=2"}));

	std::string vdbSnapshot = set["vdb"].getString("SnapshotId").value_or("");
	ASSERT_EQ(cli({"delete-tags", "--resource", vdbSnapshot, "--tag", "team"}).status, 0);
	CliResult described = cli({"describe-snapshots", "--snapshot-id", vdbSnapshot});
	EXPECT_EQ(tagsOf(described.json().get("Snapshots").at(0)), (std::set<std::string>{"run=2"}));
	ASSERT_EQ(cli({"delete-tags", "--resource", vdbVolume, "--tag", "team=db"}).status, 0);
	CliResult third = createSnapshots({"--quiesce", "off", "--copy-tags-from-source"});
	EXPECT_EQ(tagsOf(byDisk(third.json())["vdb"]), (std::set<std::string>{}));
	CliResult badResource = cli({"create-tags", "--resource", "i-123", "--tag", "a=b"});
	EXPECT_EQ(badResource.status, 1);
	EXPECT_NE(badResource.err.find("InvalidParameterValue"), std::string::npos) << badResource.err;

	CliResult hib = cli({"register-instance", "--qmp-socket", vm_->qmpSocket(), "--hibernation-enabled", "true"});
	ASSERT_EQ(hib.status, 0) << hib.err;
	CliResult refused = createSnapshots({"--quiesce", "off"});
	EXPECT_EQ(refused.status, 1);
	EXPECT_NE(refused.err.find("hibernation"), std::string::npos) << refused.err;
	ASSERT_EQ(cli({"register-instance", "--qmp-socket", vm_->qmpSocket(), "--hibernation-enabled", "false"}).status,
		  0);
	CliResult uncoded = createSnapshots({"--quiesce", "off"});
	ASSERT_EQ(uncoded.status, 0) << uncoded.err;

	CliResult badCode = cli({"register-instance", "--qmp-socket", vm_->qmpSocket(), "--product-code", "abc:paid"});
	EXPECT_EQ(badCode.status, 1);
	EXPECT_NE(badCode.err.find("InvalidParameterValue"), std::string::npos) << badCode.err;
	EXPECT_EQ(std::count(badCode.err.begin(), badCode.err.end(), '\n'), 1) << badCode.err;
	CliResult coded = cli({"register-instance", "--qmp-socket", vm_->qmpSocket(), "--product-code", "abc123",
			       "--product-code", "dp9:devpay"});
	ASSERT_EQ(coded.status, 0) << coded.err;
	CliResult withCodes = createSnapshots({"--quiesce", "off"});
	ASSERT_EQ(withCodes.status, 0) << withCodes.err;
	auto codesOf = [](const Json &j) {
		std::vector<std::string> codes;
		Json list = j.get("ProductCodes");
		for (size_t i = 0; i < list.size(); i++)
			codes.push_back(list.at(i).getString("ProductCodeId").value_or("") + ":" +
					list.at(i).getString("ProductCodeType").value_or(""));
		return codes;
	};
	const std::vector<std::string> expected = {"abc123:marketplace", "dp9:devpay"};
	EXPECT_EQ(codesOf(coded.json()), expected);
	for (auto &[disk, snap] : byDisk(withCodes.json()))
		EXPECT_EQ(codesOf(snap), expected) << disk;
	// Taken before the codes were given: without them, as they were.
	for (auto &[disk, snap] : byDisk(uncoded.json()))
		EXPECT_EQ(codesOf(snap), std::vector<std::string>{}) << disk;

	CliResult found = cli({"describe-snapshots", "--filter", "Name=product-code,Values=abc123"});
	ASSERT_EQ(found.status, 0) << found.err;
	std::set<std::string> foundIds, codedIds;
	for (size_t i = 0; i < found.json().get("Snapshots").size(); i++)
		foundIds.insert(found.json().get("Snapshots").at(i).getString("SnapshotId").value_or(""));
	for (auto &[disk, snap] : byDisk(withCodes.json()))
		codedIds.insert(snap.getString("SnapshotId").value_or(""));
	EXPECT_EQ(foundIds, codedIds);

	std::string vdaSnapshot = byDisk(withCodes.json())["vda"].getString("SnapshotId").value_or("");
	CliResult volume = cli({"create-volume", "--snapshot-id", vdaSnapshot, "--target", tmp_.file("from-coded.qcow2")});
	ASSERT_EQ(volume.status, 0) << volume.err;
	EXPECT_EQ(codesOf(volume.json()), expected);

	// The instance's codes taken back: the volume restored from a coded
	// snapshot keeps them in its record, and its next snapshot carries
	// them; the other volume's does not.
	ASSERT_EQ(cli({"register-instance", "--qmp-socket", vm_->qmpSocket()}).status, 0);
	const std::string vdaVolume = volume.json().getString("VolumeId").value_or("");
	CliResult volumes = cli({"describe-volumes", "--volume-id", vdaVolume});
	ASSERT_EQ(volumes.status, 0) << volumes.err;
	EXPECT_EQ(codesOf(volumes.json().get("Volumes").at(0)), expected) << volumes.out;
	CliResult next = createSnapshots({"--quiesce", "off"});
	ASSERT_EQ(next.status, 0) << next.err;
	EXPECT_EQ(codesOf(byDisk(next.json())["vda"]), expected);
	EXPECT_EQ(codesOf(byDisk(next.json())["vdb"]), std::vector<std::string>{});

	// The file carries them itself: attached to another instance as other
	// disks (new volume ids), a copy made with `cp -a` too, its snapshots
	// and its volume have them. No guest OS is needed for that.
	const std::string copied = tmp_.file("from-coded-copy.qcow2");
	ASSERT_EQ(runCommand({"cp", "-a", tmp_.file("from-coded.qcow2"), copied}), 0);
	QemuOptions otherOpts;
	otherOpts.name = "vs-coded-file";
	otherOpts.disks = {{tmp_.file("from-coded.qcow2"), "qcow2", "vdz"}, {copied, "qcow2", "vdy"}};
	std::string error;
	std::unique_ptr<QemuInstance> other = QemuInstance::start(otherOpts, &error);
	ASSERT_TRUE(other) << error;
	CliResult otherSnap = cli({"create-snapshot", "--qmp-socket", other->qmpSocket(), "--disk", "vdz", "--wait"});
	ASSERT_EQ(otherSnap.status, 0) << otherSnap.err;
	const std::string otherSnapId = otherSnap.json().getString("SnapshotId").value_or("");
	CliResult otherDescribed = cli({"describe-snapshots", "--snapshot-id", otherSnapId});
	ASSERT_EQ(otherDescribed.status, 0) << otherDescribed.err;
	const Json otherSnapJson = otherDescribed.json().get("Snapshots").at(0);
	const std::string otherVolume = otherSnapJson.getString("VolumeId").value_or("");
	EXPECT_NE(otherVolume, vdaVolume);
	EXPECT_EQ(codesOf(otherSnapJson), expected) << otherDescribed.out;
	// Only the catalog: what the capture saved in the volume's record.
	CliResult savedVolume = cli({"describe-volumes", "--volume-id", otherVolume});
	ASSERT_EQ(savedVolume.status, 0) << savedVolume.err;
	EXPECT_EQ(codesOf(savedVolume.json().get("Volumes").at(0)), expected) << savedVolume.out;
	// The copy, never snapshotted: describe-volumes reads its mark.
	CliResult otherVolumes = cli({"describe-volumes", "--qmp-socket", other->qmpSocket()});
	ASSERT_EQ(otherVolumes.status, 0) << otherVolumes.err;
	Json list = otherVolumes.json().get("Volumes");
	ASSERT_EQ(list.size(), 2u) << otherVolumes.out;
	for (size_t i = 0; i < list.size(); i++)
		EXPECT_EQ(codesOf(list.at(i)), expected) << otherVolumes.out;
}

// Writes generation 1, 2, ... into the first 4 KiB of each disk, every
// generation in a random order of its own, as a guest writing to its disks
// while a set is taken. A set taken at one point in time holds the newest
// generation it saw, G, on a prefix of G's order and G - 1 on the rest; a
// set taken disk by disk, while the writes go on, would not.
class GenerationWriter
{
public:
	GenerationWriter(QemuInstance &vm, std::vector<std::string> disks)
		: vm_(vm), disks_(std::move(disks)), thread_([this] { run(); })
	{
	}
	~GenerationWriter() { stop(); }

	// Stops the writes: "" or what failed.
	std::string stop()
	{
		stop_ = true;
		if (thread_.joinable())
			thread_.join();
		return error_;
	}

	int generations() const { return written_; }

	// Whether `seen` (disk: generation) is one point in time of the writes;
	// only once stopped.
	::testing::AssertionResult onePointInTime(const std::map<std::string, int> &seen) const
	{
		int newest = 0;
		for (const auto &[disk, generation] : seen)
			newest = std::max(newest, generation);
		if (newest < 1 || newest >= written_)
			return ::testing::AssertionFailure() << "newest generation " << newest << " of " << written_
							     << ": the writes did not span the point in time";
		const std::vector<std::string> &order = orders_.at(size_t(newest - 1));
		size_t reached = 0;
		while (reached < order.size() && seen.at(order[reached]) == newest)
			reached++;
		for (size_t k = reached; k < order.size(); k++) {
			if (seen.at(order[k]) == newest - 1)
				continue;
			auto failure = ::testing::AssertionFailure();
			failure << "not one point in time; generation " << newest << " went to:";
			for (const std::string &disk : order)
				failure << " " << disk << "=" << seen.at(disk);
			return failure;
		}
		return ::testing::AssertionSuccess();
	}

private:
	void run()
	{
		std::mt19937 rng(7);
		// Generations are bytes; 255 outlast any set of these small disks.
		for (int generation = 1; generation <= 255 && !stop_; generation++) {
			std::vector<std::string> order = disks_;
			std::shuffle(order.begin(), order.end(), rng);
			orders_.push_back(order);
			for (const std::string &disk : order) {
				std::string out;
				if (!vm_.qemuIo(disk, "write -P " + std::to_string(generation) + " 0 4k", &out)) {
					error_ = disk + ": " + out;
					return;
				}
			}
			written_ = generation;
		}
	}

	QemuInstance &vm_;
	std::vector<std::string> disks_;
	std::vector<std::vector<std::string>> orders_;
	std::string error_;
	std::atomic<bool> stop_ = false;
	std::atomic<int> written_ = 0;
	std::thread thread_; // last: starts once the rest is ready
};

// reference `start` with generation `generation` in its first 4 KiB, as
// GenerationWriter writes it, at `path`.
std::string withGeneration(const std::string &start, int generation, const std::string &path)
{
	fs::copy_file(start, path);
	std::vector<uint8_t> block(4096, uint8_t(generation));
	std::fstream(path, std::ios::binary | std::ios::in | std::ios::out)
		.write(reinterpret_cast<const char *>(block.data()), std::streamsize(block.size()));
	return path;
}

TEST_F(SetTest, FortyDisksAtOnePointInTimeAndNotOneMore)
{
	ASSERT_NO_FATAL_FAILURE(startGuestless(makeDisks(41)));
	QemuResidue clean = residue();
	CliResult refused = createSnapshots({"--quiesce", "off"});
	EXPECT_EQ(refused.status, 1);
	EXPECT_NE(refused.err.find("InvalidParameterValue"), std::string::npos) << refused.err;
	EXPECT_NE(refused.err.find("41 disks"), std::string::npos) << refused.err;
	EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
	EXPECT_TRUE(refused.out.empty()) << refused.out;
	EXPECT_EQ(residue(), clean);
	EXPECT_EQ(listSnapshots().size(), 0u);

	std::vector<std::string> forty;
	for (int i = 0; i < 40; i++)
		forty.push_back("d" + std::to_string(i));
	GenerationWriter writer(*vm_, forty);
	for (auto until = Clock::now() + std::chrono::seconds(10); writer.generations() < 1 && Clock::now() < until;)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	CliResult r = createSnapshots({"--quiesce", "off", "--exclude-disk", "d40"});
	std::string writeError = writer.stop();
	ASSERT_TRUE(writeError.empty()) << writeError;
	ASSERT_EQ(r.status, 0) << r.err;
	auto set = byDisk(r.json());
	ASSERT_EQ(set.size(), 40u) << r.out;
	std::map<std::string, int> seen;
	for (auto &[disk, snap] : set) {
		EXPECT_EQ(snap.getString("State"), "completed") << disk;
		EXPECT_EQ(snap.getString("SnapshotSetId"), set["d0"].getString("SnapshotSetId"));
		std::string restored = restoreRaw(snap.getString("SnapshotId").value_or(""));
		char generation = 0;
		std::ifstream(restored, std::ios::binary).read(&generation, 1);
		seen[disk] = uint8_t(generation);
		std::string expected = withGeneration(reference(std::stoi(disk.substr(1))), seen[disk],
						      tmp_.file(disk + "-expected.raw"));
		EXPECT_TRUE(sameImage(restored, "raw", expected)) << disk;
		fs::remove(restored);
	}
	EXPECT_TRUE(writer.onePointInTime(seen));
	std::printf("%d generations written while the set was taken\n", writer.generations());
}

TEST_F(SetTest, ADiskFailingMidTransferFailsTheSetAndKeepsThePreviousBitmaps)
{
	// d2 fails every read once it has been written to: the first set reads
	// it fine; the second takes its point in time (which reads nothing) and
	// then fails reading d2's data for the transfer.
	const std::string readsFailOnceWritten =
		"set-state.0.event=write_aio,set-state.0.state=1,set-state.0.new_state=2,"
		"inject-error.0.event=read_aio,inject-error.0.state=2,inject-error.0.errno=5,inject-error.0.once=off";
	ASSERT_NO_FATAL_FAILURE(startGuestless(makeDisks(3, {{2, readsFailOnceWritten}})));
	ASSERT_NO_FATAL_FAILURE(startDaemon());
	CliResult first = createSnapshots({"--quiesce", "off"});
	ASSERT_EQ(first.status, 0) << first.err;
	std::set<std::string> previous = bitmaps();
	ASSERT_EQ(previous.size(), 3u);
	ASSERT_TRUE(vm_->qemuIo("d2", "write -P 0x5a 1M 64k"));
	std::string out;
	ASSERT_FALSE(vm_->qemuIo("d2", "read 1M 64k", &out)) << "blkdebug does not fail the reads: " << out;

	CliResult second = createSnapshots({"--quiesce", "off"}, false);
	ASSERT_EQ(second.status, 0) << second.err;
	auto set = byDisk(second.json());
	ASSERT_EQ(set.size(), 3u) << second.out;
	std::string setId = set["d0"].getString("SnapshotSetId").value_or("");
	for (auto &[disk, snap] : set) {
		// Answered once the point in time was taken: the set fails later.
		EXPECT_EQ(snap.getString("State"), "pending") << disk;
		std::string id = snap.getString("SnapshotId").value_or("");
		EXPECT_EQ(waitWhilePending([&] { return describe(id).getString("State").value_or(""); }), "error")
			<< disk;
		EXPECT_NE(describe(id).getString("StateMessage").value_or("").find("disk d2"), std::string::npos)
			<< describe(id).getString("StateMessage").value_or("");
		EXPECT_FALSE(fs::exists(storeDir_ + "/snapshots/" + id + ".manifest")) << disk;
	}
	EXPECT_EQ(bitmaps(), previous);

	// The set's event may follow its last state change.
	for (auto until = Clock::now() + std::chrono::seconds(10); completionEvents(setId).empty() && Clock::now() < until;)
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	std::this_thread::sleep_for(std::chrono::milliseconds(500));
	std::vector<Json> events = completionEvents(setId);
	ASSERT_EQ(events.size(), 1u) << readFile(tmp_.file("events/events.jsonl"));
	Json detail = events[0].get("detail");
	EXPECT_EQ(detail.getString("result"), "failed");
	ASSERT_EQ(detail.get("snapshots").size(), 3u);
	for (size_t i = 0; i < 3; i++)
		EXPECT_EQ(detail.get("snapshots").at(i).getString("status"), "error");
}

// A set's disks copied side by side (three at once, forced: this host's
// cores would copy them one after another), through the engine itself on a
// QEMU with no guest. d0 and d2 hold the same data, d1 shares its first
// 8 MiB with them: each snapshot restores byte for byte, its counts are its
// own disk's whichever copy stored a shared chunk first, and a disk failing
// mid-copy fails the set and commits nothing.
TEST_F(SetTest, DisksCopiedSideBySideCountTheirOwnChunksAndFailTogether)
{
	constexpr size_t kSize = 48 << 20, kData = 32 << 20, kShared = 8 << 20;
	std::vector<uint8_t> first(kData), second(kData);
	std::mt19937_64 rng(11);
	fillRandom(rng, first);
	fillRandom(rng, second);
	std::copy_n(first.begin(), kShared, second.begin());
	// d1 fails every read once written to: the first set reads it.
	const std::string readsFailOnceWritten =
		"set-state.0.event=write_aio,set-state.0.state=1,set-state.0.new_state=2,"
		"inject-error.0.event=read_aio,inject-error.0.state=2,inject-error.0.errno=5,inject-error.0.once=off";
	std::vector<DiskSpec> disks;
	for (int i = 0; i < 3; i++) {
		const std::vector<uint8_t> &data = i == 1 ? second : first;
		{
			std::ofstream out(reference(i), std::ios::binary);
			out.write(reinterpret_cast<const char *>(data.data()), std::streamsize(data.size()));
		}
		fs::resize_file(reference(i), kSize);
		std::string path = tmp_.file("d" + std::to_string(i) + ".qcow2"), error;
		ASSERT_TRUE(convertImage(reference(i), "raw", path, "qcow2", &error)) << error;
		disks.push_back({path, "qcow2", "d" + std::to_string(i)});
	}
	disks[1].blkdebug = readsFailOnceWritten;
	ASSERT_NO_FATAL_FAILURE(startGuestless(disks));

	auto store = store::Store::open(storeDir_, keyFile_);
	ASSERT_TRUE(store) << store.error().toString();
	fs::create_directory(tmp_.file("w"));
	auto driver = hypervisor::QemuDriver::connect(vm_->qmpSocket(), tmp_.file("w"));
	ASSERT_TRUE(driver) << driver.error().toString();
	engine::SnapshotSetRequest request;
	request.driver = *driver;
	request.parallelDisks = 3;
	// The set's progress, as the copies report it: never back, and whole
	// at the end.
	std::mutex progressMutex;
	uint64_t lastDone = 0, lastTotal = 0;
	bool wentBack = false;
	auto progress = [&](uint64_t done, uint64_t total) {
		std::lock_guard lock(progressMutex);
		wentBack |= done < lastDone || done > total;
		lastDone = done;
		lastTotal = total;
	};
	auto takeSet = [&] {
		auto job = engine::beginSnapshots(**store, request);
		EXPECT_TRUE(job) << job.error().toString();
		return job ? (*job)->run(progress, nullptr) : std::vector<engine::SnapshotOutcome>{};
	};

	std::vector<engine::SnapshotOutcome> set = takeSet();
	ASSERT_EQ(set.size(), 3u);
	EXPECT_FALSE(wentBack);
	EXPECT_EQ(lastDone, 3 * kSize);
	EXPECT_EQ(lastTotal, 3 * kSize);
	const uint64_t chunk = (*store)->chunkSize(), dataChunks = kData / chunk, sharedChunks = kShared / chunk;
	uint64_t stored = 0;
	for (size_t i = 0; i < set.size(); i++) {
		const store::Manifest &m = set[i].manifest;
		ASSERT_EQ(set[i].state, SnapshotState::Completed) << set[i].stateMessage;
		ASSERT_EQ(m.volume.diskId, "d" + std::to_string(i));
		// Every data chunk of the disk is either its own new one or one
		// found stored: none of another disk's.
		EXPECT_EQ(m.stats.chunksNew + m.stats.chunksReused, dataChunks) << m.volume.diskId;
		EXPECT_EQ(m.stats.bytesRead, kData) << m.volume.diskId;
		EXPECT_EQ(m.stats.zeroChunks, (kSize - kData) / chunk) << m.volume.diskId;
		EXPECT_GE(m.stats.bytesAdded, m.stats.chunksNew * chunk) << m.volume.diskId; // random: stored whole
		std::printf("%s: %llu new, %llu reused\n", m.volume.diskId.c_str(), (unsigned long long)m.stats.chunksNew,
			    (unsigned long long)m.stats.chunksReused);
		stored += m.stats.chunksNew;
		std::string restored = tmp_.file(m.snapshotId + ".raw");
		engine::RestoreRequest restore;
		restore.snapshotId = m.snapshotId;
		restore.target = restored;
		restore.format = "raw";
		auto made = engine::createVolume(**store, restore);
		ASSERT_TRUE(made) << made.error().toString();
		EXPECT_TRUE(sameImage(restored, "raw", reference(int(i)))) << m.volume.diskId;
		fs::remove(restored);
	}
	// Random data: every distinct chunk stored once, by one of the copies.
	EXPECT_EQ(stored, 2 * dataChunks - sharedChunks);

	std::set<std::string> previous = bitmaps();
	auto manifests = (*store)->listManifests();
	ASSERT_TRUE(manifests);
	ASSERT_TRUE(vm_->qemuIo("d1", "write -P 0x5a 1M 64k"));
	std::vector<engine::SnapshotOutcome> failed = takeSet();
	ASSERT_EQ(failed.size(), 3u);
	for (const engine::SnapshotOutcome &o : failed) {
		EXPECT_EQ(o.state, SnapshotState::Error) << o.manifest.volume.diskId;
		EXPECT_NE(o.stateMessage.find("disk d1"), std::string::npos) << o.stateMessage;
		EXPECT_FALSE(fs::exists(storeDir_ + "/snapshots/" + o.manifest.snapshotId + ".manifest"));
	}
	EXPECT_EQ((*store)->listManifests()->size(), manifests->size());
	EXPECT_EQ(bitmaps(), previous);
}

// restore-instance does not write over the disks of a running plain QEMU;
// with --target-dir it writes the whole set beside them, every disk
// compared, leaves the instance alone, and overwrites nothing.
TEST_F(SetTest, RestoreInstanceOfARunningQemuIsRefusedOrGoesToATargetDir)
{
	ASSERT_NO_FATAL_FAILURE(startGuestless(makeDisks(3)));
	CliResult taken = createSnapshots({"--quiesce", "off"});
	ASSERT_EQ(taken.status, 0) << taken.err;
	auto set = byDisk(taken.json());
	std::string setId = set["d0"].getString("SnapshotSetId").value_or("");
	std::vector<std::string> restore{"restore-instance", "--snapshot-set-id", setId, "--qmp-socket",
					 vm_->qmpSocket()};

	CliResult refused = cli(restore);
	EXPECT_EQ(refused.status, 1);
	EXPECT_NE(refused.err.find("IncorrectState"), std::string::npos) << refused.err;
	EXPECT_NE(refused.err.find("--target-dir"), std::string::npos) << refused.err;
	EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;

	std::string dir = tmp_.file("restored");
	fs::create_directories(dir);
	restore.insert(restore.end(), {"--target-dir", dir});
	CliResult written = cli(restore);
	ASSERT_EQ(written.status, 0) << written.err;
	for (int i = 0; i < 3; i++) {
		std::string image = dir + "/d" + std::to_string(i) + ".qcow2";
		ASSERT_TRUE(fs::exists(image)) << written.out;
		EXPECT_TRUE(sameImage(image, "qcow2", reference(i))) << image;
	}
	EXPECT_EQ(runState(), "running");

	CliResult again = cli(restore);
	EXPECT_EQ(again.status, 1);
	EXPECT_NE(again.err.find("TargetExists"), std::string::npos) << again.err;
	EXPECT_EQ(std::count(again.err.begin(), again.err.end(), '\n'), 1) << again.err;
}

TEST_F(SetTest, ASuspendedInstanceIsRefusedAndLeftSuspended)
{
	ASSERT_NO_FATAL_FAILURE(startGuestless(makeDisks(2)));
	ASSERT_NO_FATAL_FAILURE(suspendToRam());
	QemuResidue before = residue();
	CliResult r = createSnapshots({"--quiesce", "off"});
	EXPECT_EQ(r.status, 1);
	EXPECT_NE(r.err.find("IncorrectState"), std::string::npos) << r.err;
	EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	EXPECT_TRUE(r.out.empty()) << r.out;
	EXPECT_EQ(runState(), "suspended");
	EXPECT_EQ(residue(), before);
	EXPECT_EQ(listSnapshots().size(), 0u);

	// Paused (QMP stop) is not suspended: the set is taken, and QEMU stays
	// paused.
	ASSERT_TRUE(vm_->control().execute("system_wakeup"));
	ASSERT_TRUE(vm_->control().execute("stop"));
	ASSERT_EQ(runState(), "paused");
	CliResult paused = createSnapshots({"--quiesce", "off"});
	EXPECT_EQ(paused.status, 0) << paused.err;
	EXPECT_EQ(runState(), "paused");
}

} // namespace
} // namespace virtsnap::test
