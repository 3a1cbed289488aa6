#include "cli_fixture.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/support/random_bytes.h"

namespace virtsnap::test {

void mirrorWrite(QemuInstance &vm, const std::string &device, const std::string &reference,
		 const std::string &scratchFile, uint64_t offset, uint64_t length, int pattern)
{
	std::vector<uint8_t> buf(length, uint8_t(pattern));
	std::string range = std::to_string(offset) + " " + std::to_string(length);
	std::string cmd = "write -P " + std::to_string(pattern) + " " + range;
	if (pattern < 0) {
		std::mt19937_64 rng(offset ^ length);
		fillRandom(rng, buf);
		std::ofstream(scratchFile, std::ios::binary)
			.write(reinterpret_cast<const char *>(buf.data()), std::streamsize(length));
		cmd = "write -s " + scratchFile + " " + range;
	}
	std::string out;
	ASSERT_TRUE(vm.qemuIo(device, cmd, &out)) << out;
	int fd = ::open(reference.c_str(), O_WRONLY | O_CLOEXEC);
	ASSERT_GE(fd, 0) << reference;
	ASSERT_EQ(::pwrite(fd, buf.data(), length, off_t(offset)), ssize_t(length));
	::close(fd);
}

::testing::AssertionResult sameImage(const std::string &image, const std::string &format,
				     const std::string &expected)
{
	std::string out;
	if (runCommand({"qemu-img", "compare", "-f", format, "-F", "raw", image, expected}, &out) == 0)
		return ::testing::AssertionSuccess();
	return ::testing::AssertionFailure() << image << " differs from " << expected << ": " << out;
}

std::string waitWhilePending(const std::function<std::string()> &stateOf, std::chrono::seconds timeout)
{
	std::string state;
	for (auto deadline = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < deadline;) {
		state = stateOf();
		if (state != "pending")
			return state;
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
	return state;
}

std::string CliTest::workRoot()
{
	std::string dir = tmp_.file("tmp");
	std::filesystem::create_directories(dir);
	return dir;
}

CliResult CliTest::cli(std::vector<std::string> args, const std::string &socket, const std::string &keyFile)
{
	args.insert(args.begin(), {"--store", storeDir_, "--key-file", keyFile.empty() ? keyFile_ : keyFile});
	return runVirtsnap(args, {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + (socket.empty() ? cliSocket_ : socket)});
}

CliResult CliTest::cliWhileStopped(pid_t pid, std::vector<std::string> args, std::chrono::milliseconds *took)
{
	StoppedProcess stopped(pid);
	EXPECT_TRUE(stopped.stopped()) << "cannot stop process " << pid;
	auto asked = std::chrono::steady_clock::now();
	CliResult r = cli(std::move(args));
	*took = since(asked);
	std::printf("%s %.1f s after it was asked\n", r.status == 0 ? "answered" : "failed", took->count() / 1000.0);
	return r;
}

virtsnap::Json guestExecArguments(const std::string &script)
{
	virtsnap::Json argv = virtsnap::Json::array();
	argv.append(virtsnap::Json::string("-c"));
	argv.append(virtsnap::Json::string(script));
	virtsnap::Json args = virtsnap::Json::object();
	args.set("path", virtsnap::Json::string("/bin/sh"));
	args.set("arg", argv);
	return args;
}

VirtsnapdOptions CliTest::daemonOptions(const std::string &socket, std::vector<std::string> args)
{
	return {.store = storeDir_,
		.keyFile = keyFile_,
		.socket = socket,
		.eventsLog = tmp_.file("events/events.jsonl"),
		.eventsDir = tmp_.file("events.d"),
		.tmpDir = workRoot(),
		.logFile = tmp_.file("virtsnapd.log"),
		.args = std::move(args)};
}

} // namespace virtsnap::test
