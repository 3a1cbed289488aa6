// serve-snapshot end to end: a snapshot imported from a reference image,
// served by nbdkit with virtsnap's plugin, reads back equal to the
// reference (qemu-img compare over NBD) and sparse (qemu-img map); a
// --writable export takes writes while the snapshot stays as it was; a
// served snapshot cannot be deleted until stop-serving; an export whose
// nbdkit died is listed once as gone; bad input is one line. No QEMU: the
// snapshot comes from import-image, the reference is written here.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
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


class ServeTest : public CliTest
{
protected:
	ServeTest() : CliTest("vs-serve") {}

	void SetUp() override
	{
		SKIP_WHERE_NBDKIT_CANNOT_LOAD_THE_PLUGIN();
		REQUIRE_TOOL("qemu-img");
		REQUIRE_TOOL("qemu-io");
		REQUIRE_TOOL("nbdkit");
		ASSERT_EQ(cli({"init"}).status, 0);
		ASSERT_NO_FATAL_FAILURE(makeReference());
		CliResult imported = cli({"import-image", "--file", reference_, "--format", "raw"});
		ASSERT_EQ(imported.status, 0) << imported.err;
		snapshot_ = imported.json().getString("SnapshotId").value_or("");
		ASSERT_EQ(imported.json().getString("State"), "completed");
	}

	// 1 GiB, sparse: 2 MiB of random bytes at 0, text across a 64 KiB
	// edge at 100 MiB, and random bytes in the last 64 KiB.
	void makeReference()
	{
		int fd = ::open(reference_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(::ftruncate(fd, off_t(kGiB)), 0);
		std::mt19937_64 rng(13);
		std::vector<uint8_t> random(2 * kMiB);
		fillRandom(rng, std::span(random.data(), random.size()));
		ASSERT_EQ(::pwrite(fd, random.data(), random.size(), 0), ssize_t(random.size()));
		const std::string text = "virtsnap serve-snapshot reference line\n";
		std::string lines;
		while (lines.size() < 8192)
			lines += text;
		ASSERT_EQ(::pwrite(fd, lines.data(), lines.size(), off_t(100 * kMiB - 4096)), ssize_t(lines.size()));
		ASSERT_EQ(::pwrite(fd, random.data(), 65536, off_t(kGiB - 65536)), 65536);
		::close(fd);
	}

	Json serve(std::vector<std::string> more, const std::string &daemonSocket = "")
	{
		std::vector<std::string> args = {"serve-snapshot", "--snapshot-id", snapshot_};
		args.insert(args.end(), more.begin(), more.end());
		CliResult r = cli(args, daemonSocket);
		EXPECT_EQ(r.status, 0) << r.err;
		Json j = r.json();
		EXPECT_EQ(j.getString("State"), "active") << r.out;
		return j;
	}

	void expectOneLineError(const CliResult &r, const std::string &code, const std::string &mentions)
	{
		EXPECT_NE(r.status, 0);
		EXPECT_NE(r.err.find(code), std::string::npos) << r.err;
		EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	}

	// The bytes qemu-img map says hold data, through the export.
	uint64_t dataBytes(const std::string &uri)
	{
		std::string out;
		EXPECT_EQ(runCommand({"qemu-img", "map", "--output=json", "-f", "raw", uri}, &out), 0) << out;
		auto map = Json::parse(out);
		EXPECT_TRUE(map && map->isArray()) << out;
		uint64_t data = 0;
		for (size_t i = 0; map && i < map->size(); i++)
			if (map->at(i).getBool("data").value_or(true))
				data += uint64_t(map->at(i).getInt("length").value_or(0));
		return data;
	}

	std::string exportState(const std::string &exportId)
	{
		CliResult r = cli({"describe-exports"});
		EXPECT_EQ(r.status, 0) << r.err;
		Json list = r.json().get("Exports");
		for (size_t i = 0; i < list.size(); i++)
			if (list.at(i).getString("ExportId") == exportId)
				return list.at(i).getString("State").value_or("");
		return "";
	}

	// nbdkits of this test's store that a failed test left running.
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

	std::string socket_ = tmp_.file("export.sock");
	std::string reference_ = tmp_.file("reference.raw");
	std::string snapshot_;
};

TEST_F(ServeTest, ServedThroughVirtsnapdReadsAsTheReferenceAndCannotBeDeleted)
{
	std::string daemonSocket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(daemonSocket));
	ASSERT_TRUE(daemon.start());
	Json e = serve({"--nbd-socket", socket_}, daemonSocket);
	std::string uri = e.getString("Uri").value_or("");
	std::string exportId = e.getString("ExportId").value_or("");
	EXPECT_EQ(uri, "nbd+unix:///?socket=" + socket_);
	expectOneLineError(cli({"delete-snapshot", "--snapshot-id", snapshot_}, daemonSocket), "InvalidSnapshot.InUse",
			   exportId);

	// gc keeps the chunks of a served snapshot even when its manifest is
	// removed behind virtsnap's back: the export record holds a copy. The
	// export's first reads come after, so nothing is in its cache yet.
	std::string manifest = storeDir_ + "/snapshots/" + snapshot_ + ".manifest";
	std::string aside = tmp_.file("manifest.aside");
	ASSERT_EQ(::rename(manifest.c_str(), aside.c_str()), 0);
	CliResult gc = cli({"gc", "--grace-seconds", "0"}, daemonSocket);
	ASSERT_EQ(gc.status, 0) << gc.err;
	EXPECT_EQ(gc.json().getInt("SnapshotsHeld"), 1) << gc.out;
	EXPECT_TRUE(sameImage(uri, "raw", reference_));
	ASSERT_EQ(::rename(aside.c_str(), manifest.c_str()), 0);
	// Sparse: holes are holes. About 2.2 MiB hold data (rounded up to
	// whole chunks); without base:allocation all 1 GiB would.
	uint64_t data = dataBytes(uri);
	EXPECT_GE(data, 2 * kMiB);
	EXPECT_LE(data, 4 * kMiB);
	EXPECT_EQ(exportState(exportId), "active");

	CliResult stopped = cli({"stop-serving", "--export-id", exportId}, daemonSocket);
	ASSERT_EQ(stopped.status, 0) << stopped.err;
	EXPECT_EQ(stopped.json().getString("State"), "stopped");
	EXPECT_FALSE(fs::exists(socket_));
	EXPECT_EQ(exportState(exportId), "");
	CliResult deleted = cli({"delete-snapshot", "--snapshot-id", snapshot_}, daemonSocket);
	EXPECT_EQ(deleted.status, 0) << deleted.err;
}

TEST_F(ServeTest, AWritableExportTakesWritesAndTheSnapshotStaysAsItWas)
{
	Json e = serve({"--nbd-socket", socket_, "--writable"});
	std::string uri = e.getString("Uri").value_or("");
	std::string out;
	ASSERT_EQ(runCommand({"qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 2M", uri}, &out), 0) << out;
	ASSERT_EQ(runCommand({"qemu-io", "-f", "raw", "-c", "read -P 0xab 1M 2M", uri}, &out), 0) << out;
	EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
	// The export reads as the reference with that write on it.
	std::string written = tmp_.file("written.raw");
	ASSERT_EQ(runCommand({"cp", "--sparse=always", reference_, written}), 0);
	ASSERT_EQ(runCommand({"qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 2M", written}, &out), 0) << out;
	EXPECT_TRUE(sameImage(uri, "raw", written));
	EXPECT_FALSE(sameImage(uri, "raw", reference_));
	CliResult stopped = cli({"stop-serving", "--export-id", e.getString("ExportId").value_or("")});
	ASSERT_EQ(stopped.status, 0) << stopped.err;

	CliResult verified = cli({"verify", "--snapshot-id", snapshot_});
	EXPECT_EQ(verified.status, 0) << verified.out << verified.err;
	std::string restored = tmp_.file("restored.raw");
	CliResult r = cli({"create-volume", "--snapshot-id", snapshot_, "--target", restored, "--format", "raw"});
	ASSERT_EQ(r.status, 0) << r.err;
	EXPECT_TRUE(sameImage(restored, "raw", reference_));
}

TEST_F(ServeTest, ADeadServerIsGoneAndBadInputIsOneLine)
{
	// A TCP export; its nbdkit killed behind virtsnap's back.
	int listener = ::socket(AF_INET, SOCK_STREAM, 0);
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(addr);
	ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
	ASSERT_EQ(::listen(listener, 1), 0);
	ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr *>(&addr), &len), 0);
	std::string taken = std::to_string(ntohs(addr.sin_port));
	expectOneLineError(cli({"serve-snapshot", "--snapshot-id", snapshot_, "--port", taken}), "InvalidParameterValue",
			   "port " + taken + " on 127.0.0.1 is in use");
	::close(listener); // now free: served there
	Json e = serve({"--port", taken});
	EXPECT_EQ(e.getString("Uri"), "nbd://127.0.0.1:" + taken + "/");
	EXPECT_TRUE(sameImage(e.getString("Uri").value_or(""), "raw", reference_));
	std::string exportId = e.getString("ExportId").value_or("");
	ASSERT_EQ(::kill(pid_t(e.getInt("Pid").value_or(0)), SIGKILL), 0);
	for (int i = 0; i < 100 && ::kill(pid_t(e.getInt("Pid").value_or(0)), 0) == 0; i++) {
		// A zombie until its parent (init) reaps it: that counts as gone.
		std::string stat;
		(void)runCommand({"sh", "-c", "cut -d' ' -f3 /proc/" + std::to_string(e.getInt("Pid").value_or(0)) + "/stat"},
				 &stat);
		if (stat.rfind("Z", 0) == 0)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
	EXPECT_EQ(exportState(exportId), "gone");
	EXPECT_EQ(exportState(exportId), ""); // listed once, then pruned
	EXPECT_EQ(cli({"delete-snapshot", "--snapshot-id", snapshot_}).status, 0);

	expectOneLineError(cli({"serve-snapshot", "--snapshot-id", snapshot_, "--nbd-socket", socket_}),
			   "InvalidSnapshot.NotFound", snapshot_);
	CliResult pending = cli({"start-snapshot", "--volume-size", "1"});
	ASSERT_EQ(pending.status, 0) << pending.err;
	std::string pendingId = pending.json().getString("SnapshotId").value_or("");
	expectOneLineError(cli({"serve-snapshot", "--snapshot-id", pendingId, "--nbd-socket", socket_}), "IncorrectState",
			   "pending");
	CliResult again = cli({"import-image", "--file", reference_, "--format", "raw"});
	ASSERT_EQ(again.status, 0) << again.err;
	snapshot_ = again.json().getString("SnapshotId").value_or("");
	std::string file = tmp_.file("taken.sock");
	ASSERT_EQ(runCommand({"touch", file}), 0);
	expectOneLineError(cli({"serve-snapshot", "--snapshot-id", snapshot_, "--nbd-socket", file}), "TargetExists",
			   "taken.sock");
	expectOneLineError(cli({"serve-snapshot", "--snapshot-id", snapshot_}), "InvalidParameterValue", "--nbd-socket");
	expectOneLineError(cli({"stop-serving", "--export-id", "exp-00000000000000000"}), "ResourceNotFoundException",
			   "exp-00000000000000000");
	// No nbdkit on PATH.
	CliResult noNbdkit = runVirtsnap({"--store", storeDir_, "--key-file", keyFile_, "serve-snapshot", "--snapshot-id",
					  snapshot_, "--nbd-socket", socket_},
					 {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + cliSocket_, "PATH=" + tmp_.path()});
	expectOneLineError(noNbdkit, "IOError", "nbdkit");
	CliResult none = cli({"describe-exports"});
	EXPECT_EQ(none.json().get("Exports").size(), 0u) << none.out;
}

} // namespace
} // namespace virtsnap::test
