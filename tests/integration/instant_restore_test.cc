// Instant restore (create-volume --instant, complete-instant-restore)
// against a real QEMU with no guest OS and a real nbdkit: the image is
// usable at once, its data reads right through the export while QEMU's
// block-stream copies it in (slowed, so it is still running when read),
// and once the copy ends the image stands alone, its export is gone, and
// it is identical to a classic create-volume of the same snapshot. A
// store that cannot be read during the copy gives I/O errors, never
// zeros, and the copy resumes. Without an instance the copy runs offline.
// The snapshot comes from import-image of a reference written here.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "cli_fixture.h"
#include "tests/support/nbdkit_plugin.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"


namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;

class InstantRestoreTest : public QemuCliTest
{
protected:
	InstantRestoreTest() : QemuCliTest("vs-instant") {}

	void SetUp() override
	{
		SKIP_WHERE_NBDKIT_CANNOT_LOAD_THE_PLUGIN();
		REQUIRE_QEMU();
		REQUIRE_TOOL("nbdkit");
		ASSERT_EQ(cli({"init"}).status, 0);
		ASSERT_NO_FATAL_FAILURE(writeReference());
		CliResult imported = cli({"import-image", "--file", reference_, "--format", "raw"});
		ASSERT_EQ(imported.status, 0) << imported.err;
		snapshot_ = imported.json().getString("SnapshotId").value_or("");
		CliResult classic = cli({"create-volume", "--snapshot-id", snapshot_, "--target", classic_});
		ASSERT_EQ(classic.status, 0) << classic.err;
	}

	void TearDown() override
	{
		for (const auto &entry : fs::directory_iterator("/proc")) {
			std::string pid = entry.path().filename();
			if (pid.find_first_not_of("0123456789") != std::string::npos)
				continue;
			std::ifstream in(entry.path() / "cmdline");
			std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
			if (cmdline.rfind("nbdkit", 0) == 0 && cmdline.find("store=" + storeDir_) != std::string::npos)
				::kill(pid_t(std::stol(pid)), SIGKILL);
		}
	}

	// 64 MiB, sparse: nothing in the first 16 MiB (a slowed copy takes a
	// while to reach data), 0xab over [16, 17) MiB, random bytes over
	// [20, 24) MiB and in the last 64 KiB.
	void writeReference()
	{
		int fd = ::open(reference_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(::ftruncate(fd, off_t(64 * kMiB)), 0);
		std::vector<uint8_t> bytes(4 * kMiB, 0xab);
		ASSERT_EQ(::pwrite(fd, bytes.data(), kMiB, off_t(16 * kMiB)), ssize_t(kMiB));
		std::mt19937_64 rng(4);
		fillRandom(rng, std::span(bytes.data(), bytes.size()));
		ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), off_t(20 * kMiB)), ssize_t(bytes.size()));
		ASSERT_EQ(::pwrite(fd, bytes.data(), 65536, off_t(64 * kMiB - 65536)), 65536);
		::close(fd);
	}

	Json instantOf(const std::string &socket = "")
	{
		CliResult r = cli({"describe-instant-restores", "--target", target_}, socket);
		EXPECT_EQ(r.status, 0) << r.err;
		Json list = r.json().get("InstantRestores");
		return list.size() == 1 ? list.at(0) : Json();
	}

	// The state once it is no longer "initializing" (60 s at most).
	Json waitInstant(const std::string &socket)
	{
		Json j;
		for (int i = 0; i < 600; i++) {
			j = instantOf(socket);
			if (j.getString("State") != "initializing")
				break;
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		}
		return j;
	}

	std::string pullJobStatus()
	{
		auto jobs = vm_->control().execute("query-jobs");
		if (!jobs)
			return "";
		for (size_t i = 0; i < jobs->size(); i++)
			if (jobs->at(i).getString("id") == "vs-pull-restored")
				return jobs->at(i).getString("status").value_or("");
		return "";
	}

	// qemu-img of an image QEMU has open: -U.
	::testing::AssertionResult standsAloneAndMatchesClassic()
	{
		std::string out;
		if (runCommand({"qemu-img", "info", "-U", "--output=json", target_}, &out) != 0)
			return ::testing::AssertionFailure() << out;
		auto info = Json::parse(out);
		if (!info || info->has("backing-filename"))
			return ::testing::AssertionFailure() << "still has a backing: " << out;
		if (runCommand({"qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", target_, classic_}, &out) != 0)
			return ::testing::AssertionFailure() << "differs from the classic restore: " << out;
		return ::testing::AssertionSuccess();
	}

	size_t exports()
	{
		CliResult r = cli({"describe-exports"});
		return r.json().get("Exports").size();
	}

	void expectOneLine(const CliResult &r, const std::string &code, const std::string &mentions)
	{
		EXPECT_NE(r.status, 0);
		EXPECT_NE(r.err.find(code), std::string::npos) << r.err;
		EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	}

	std::string reference_ = tmp_.file("reference.raw");
	std::string classic_ = tmp_.file("classic.qcow2");
	std::string target_ = tmp_.file("restored.qcow2");
	std::string snapshot_;
};

TEST_F(InstantRestoreTest, UsableAtOnceCopiedByBlockStreamAndResumedAfterTheStoreFailed)
{
	std::string error;
	QemuOptions options;
	options.freeMonitors = 1;
	vm_ = QemuInstance::start(options, &error);
	ASSERT_TRUE(vm_) << error;
	std::string daemonSocket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(daemonSocket));
	ASSERT_TRUE(daemon.start());

	// A node name QEMU refuses: one line, and no file, no export left.
	CliResult refused = cli({"create-volume", "--snapshot-id", snapshot_, "--target", target_, "--instant",
				 "--qmp-socket", vm_->qmpSocket(0), "--node", "no such node"},
				daemonSocket);
	expectOneLine(refused, "HypervisorError", "no such node");
	EXPECT_FALSE(fs::exists(target_));
	EXPECT_EQ(exports(), 0u);

	// 1 MiB/s: the copy needs 16 s to reach the first data.
	CliResult r = cli({"create-volume", "--snapshot-id", snapshot_, "--target", target_, "--instant", "--qmp-socket",
			   vm_->qmpSocket(0), "--node", "restored", "--speed", "1048576"},
			  daemonSocket);
	ASSERT_EQ(r.status, 0) << r.err;
	Json j = r.json();
	EXPECT_EQ(j.getString("State"), "initializing") << r.out;
	EXPECT_GT(j.getInt("ReadyMillis").value_or(-1), 0);
	EXPECT_EQ(pullJobStatus(), "running");
	EXPECT_EQ(exports(), 1u);

	// The store's packs gone: what the export has not read yet is an I/O
	// error, never zeros.
	fs::path packs = fs::path(storeDir_) / "packs", aside = fs::path(storeDir_) / "packs.aside";
	fs::rename(packs, aside);
	std::string out;
	EXPECT_FALSE(vm_->qemuIoNode("restored", "read -P 0xab 16M 64k", &out)) << out;
	EXPECT_NE(out.find("error"), std::string::npos) << out;
	// The copy reaches the data at full speed, and fails there.
	ASSERT_TRUE(vm_->control().execute("block-job-set-speed",
					   *Json::parse(R"({"device":"vs-pull-restored","speed":0})")));
	Json failed = waitInstant(daemonSocket);
	EXPECT_EQ(failed.getString("State"), "error") << failed.dump();
	EXPECT_EQ(exports(), 1u) << "a failed copy keeps the export";

	// The store back: the image reads right through it while a slowed
	// copy runs again, resumed by complete-instant-restore.
	fs::rename(aside, packs);
	CliResult resumed = cli({"complete-instant-restore", "--target", target_, "--speed", "1048576"}, daemonSocket);
	ASSERT_EQ(resumed.status, 0) << resumed.err;
	EXPECT_EQ(resumed.json().getString("State"), "initializing") << resumed.out;
	EXPECT_TRUE(vm_->qemuIoNode("restored", "read -P 0xab 16M 1M", &out)) << out;
	EXPECT_EQ(pullJobStatus(), "running") << "the data was read through the export, before the copy ended";
	// virtsnapd restarted while the copy runs: the new one watches it to
	// its end, with no complete-instant-restore.
	daemon.stop();
	ASSERT_TRUE(daemon.start());
	ASSERT_TRUE(vm_->control().execute("block-job-set-speed",
					   *Json::parse(R"({"device":"vs-pull-restored","speed":0})")));
	Json done = waitInstant(daemonSocket);
	EXPECT_EQ(done.getString("State"), "available") << done.dump();
	EXPECT_GE(done.getInt("CopiedMillis").value_or(-1), done.getInt("ReadyMillis").value_or(0));
	// The resumed run's nbdkit fetched each distinct chunk once (its
	// cache, 64 MiB, holds them all): the 4 MiB of random bytes (the last
	// 64 KiB repeat its first) and one 64 KiB chunk of 0xab (dedup).
	EXPECT_EQ(done.getInt("BytesFromStore").value_or(0), int64_t(4 * kMiB + 65536)) << done.dump();
	EXPECT_GE(done.getInt("BytesServed").value_or(0), int64_t(40 * kMiB)) << done.dump();
	EXPECT_EQ(exports(), 0u);
	EXPECT_TRUE(standsAloneAndMatchesClassic());

	bool evented = false;
	for (const std::string &line : lines(readFile(tmp_.file("events/events.jsonl")))) {
		auto event = Json::parse(line);
		if (event && event->getString("detail-type") == "EBS Volume Notification" &&
		    event->get("detail").getString("result") == "available") {
			EXPECT_EQ(event->get("detail").getString("snapshot_id"), snapshot_);
			evented = true;
		}
	}
	EXPECT_TRUE(evented) << readFile(tmp_.file("events/events.jsonl"));
	EXPECT_EQ(cli({"delete-snapshot", "--snapshot-id", snapshot_}, daemonSocket).status, 0);
}

TEST_F(InstantRestoreTest, OfflineCopyAndBadInputLeaveNothing)
{
	// Unknown instance, pending snapshot, taken target, no nbdkit: one
	// line each, no file, no export.
	expectOneLine(cli({"create-volume", "--snapshot-id", snapshot_, "--target", target_, "--instant", "--qmp-socket",
			   tmp_.file("nothing.qmp"), "--node", "n"}),
		      "HypervisorError", "nothing.qmp");
	CliResult pending = cli({"start-snapshot", "--volume-size", "1"});
	ASSERT_EQ(pending.status, 0) << pending.err;
	expectOneLine(cli({"create-volume", "--snapshot-id", pending.json().getString("SnapshotId").value_or(""),
			   "--target", target_, "--instant"}),
		      "IncorrectState", "pending");
	expectOneLine(cli({"create-volume", "--snapshot-id", snapshot_, "--target", classic_, "--instant"}),
		      "TargetExists", classic_);
	CliResult noNbdkit = runVirtsnap({"--store", storeDir_, "--key-file", keyFile_, "create-volume", "--snapshot-id",
					  snapshot_, "--target", target_, "--instant"},
					 {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + cliSocket_, "PATH=" + tmp_.path()});
	expectOneLine(noNbdkit, "IOError", "nbdkit");
	EXPECT_FALSE(fs::exists(target_));
	EXPECT_EQ(exports(), 0u);

	// No instance: the image reads as the snapshot through its export at
	// once, and the copy runs offline.
	CliResult r = cli({"create-volume", "--snapshot-id", snapshot_, "--target", target_, "--instant"});
	ASSERT_EQ(r.status, 0) << r.err;
	EXPECT_EQ(r.json().getString("State"), "initializing");
	EXPECT_TRUE(sameImage(target_, "qcow2", reference_));
	EXPECT_EQ(exports(), 1u);
	expectOneLine(cli({"delete-snapshot", "--snapshot-id", snapshot_}), "InvalidSnapshot.InUse", snapshot_);
	CliResult done = cli({"complete-instant-restore", "--target", target_});
	ASSERT_EQ(done.status, 0) << done.err;
	EXPECT_EQ(done.json().getString("State"), "available");
	EXPECT_EQ(exports(), 0u);
	EXPECT_TRUE(standsAloneAndMatchesClassic());
	expectOneLine(cli({"complete-instant-restore", "--target", tmp_.file("other.qcow2")}), "ResourceNotFound",
		      "other.qcow2");
}

} // namespace
} // namespace virtsnap::test
