// virtsnapd against clients that misbehave: a line past the size limit, bytes
// that are not UTF-8 or not JSON, a thousand idle connections, clients that
// leave before their answer. Each must cost the daemon a bounded amount and
// never stop it serving the others. (Outsiders are refused in daemon_test.)
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli_fixture.h"
#include "tests/support/daemon_connection.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char *kProbe = R"({"command": "describe-snapshots", "options": {}})"
			       "\n";

class DaemonClientsTest : public CliTest
{
protected:
	DaemonClientsTest() : CliTest("vs-clients") {}

	void SetUp() override { ASSERT_EQ(cli({"init"}).status, 0); }

	// Whether the daemon still answers a plain client through the CLI.
	void expectServing()
	{
		ASSERT_TRUE(daemon_.running());
		CliResult r = cli({"describe-snapshots"}, socket_);
		EXPECT_EQ(r.status, 0) << r.err;
		EXPECT_TRUE(r.json().has("Snapshots")) << r.out;
	}

	std::string socket_ = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon_{daemonOptions(socket_)};
};

TEST_F(DaemonClientsTest, ALineOverTheLimitIsRefusedWithoutBeingRead)
{
	ASSERT_TRUE(daemon_.start());
	long peakBefore = procStatusField(daemon_.pid(), "VmHWM");
	DaemonConnection c(socket_);
	ASSERT_GE(c.fd(), 0);
	timeval tv{10, 0};
	::setsockopt(c.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	// 64 MiB with no newline: the daemon must stop taking it after 1 MiB.
	std::atomic<size_t> sent{0};
	std::thread writer([&] {
		std::string piece(64 * 1024, 'a');
		while (sent < 64 * kMiB && c.send(piece))
			sent += piece.size();
	});
	std::string reply = c.readLine();
	writer.join();
	EXPECT_NE(reply.find("InvalidParameterValue"), std::string::npos) << reply;
	EXPECT_NE(reply.find("longer than 1048576 bytes"), std::string::npos) << reply;
	EXPECT_TRUE(c.closedWithin(5s));
	// What the socket buffers hold besides the limit, and no more.
	EXPECT_LT(sent.load(), 16 * kMiB);
	EXPECT_LT(procStatusField(daemon_.pid(), "VmHWM") - peakBefore, 16 * 1024) << "kB";
	expectServing();
}

TEST_F(DaemonClientsTest, BytesThatAreNotUtf8OrNotJsonGetOneErrorReplyEach)
{
	ASSERT_TRUE(daemon_.start());
	DaemonConnection c(socket_);
	ASSERT_GE(c.fd(), 0);
	ASSERT_TRUE(c.send("{\"command\": \"describe-snapshots\xc3\x28\"}\n"
			   "{not json\n"
			   "[\"command\", 1]\n" +
			   std::string(kProbe)));
	std::string utf8 = c.readLine(), notJson = c.readLine(), notObject = c.readLine(), fine = c.readLine();
	EXPECT_NE(utf8.find("not valid UTF-8"), std::string::npos) << utf8;
	EXPECT_NE(notJson.find("not JSON"), std::string::npos) << notJson;
	EXPECT_NE(notObject.find("\"ok\":false"), std::string::npos) << notObject;
	for (const std::string &line : {utf8, notJson, notObject})
		EXPECT_NE(line.find("InvalidParameterValue"), std::string::npos) << line;
	// The same connection goes on, and nothing more was said.
	EXPECT_NE(fine.find("\"ok\":true"), std::string::npos) << fine;
	EXPECT_EQ(c.readLine(500ms), "");
}

TEST_F(DaemonClientsTest, AThousandIdleConnectionsStarveNoOneAndAreLetGo)
{
	rlimit files{};
	ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &files), 0);
	if (files.rlim_cur < 4096 && files.rlim_max >= 4096) {
		files.rlim_cur = 4096;
		ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &files), 0);
	}
	ASSERT_TRUE(daemon_.start({"--client-timeout", "3"}));
	long threadsBefore = procStatusField(daemon_.pid(), "Threads");
	std::vector<std::unique_ptr<DaemonConnection>> idle;
	for (int i = 0; i < 1000; i++) {
		idle.push_back(std::make_unique<DaemonConnection>(socket_));
		ASSERT_GE(idle.back()->fd(), 0) << "connection " << i << ": " << std::strerror(errno);
	}
	expectServing();
	// Let go after --client-timeout: every one closed, and their threads gone.
	size_t closed = 0;
	auto deadline = Clock::now() + 30s;
	for (auto &c : idle) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
		closed += c->closedWithin(std::max(left, 1ms));
	}
	EXPECT_EQ(closed, idle.size());
	long threads = -1;
	while (Clock::now() < deadline && (threads = procStatusField(daemon_.pid(), "Threads")) > threadsBefore)
		std::this_thread::sleep_for(100ms);
	EXPECT_LE(threads, threadsBefore);
	expectServing();
}

TEST_F(DaemonClientsTest, ClientsThatLeaveBeforeTheirAnswersDisturbNoOne)
{
	ASSERT_TRUE(daemon_.start());
	std::string many;
	for (int i = 0; i < 2000; i++)
		many += kProbe;
	for (int round = 0; round < 20; round++) {
		DaemonConnection c(socket_);
		ASSERT_GE(c.fd(), 0);
		c.send(many.substr(0, many.size() / 2));
		// Closed with answers unread: the daemon's sends meet a reset.
	}
	for (int round = 0; round < 50; round++) {
		DaemonConnection c(socket_);
		c.send(std::string(kProbe).substr(0, 20)); // half a request, then gone
	}
	EXPECT_EQ(::kill(daemon_.pid(), 0), 0);
	expectServing();
	DaemonConnection after(socket_);
	ASSERT_TRUE(after.send(kProbe));
	EXPECT_NE(after.readLine().find("\"ok\":true"), std::string::npos);
}

} // namespace
} // namespace virtsnap::test
