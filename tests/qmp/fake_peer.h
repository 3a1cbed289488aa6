// A scripted QMP / guest-agent peer for client tests, in the spirit of
// libvirt's qemumonitortestutils: a unix-socket server on its own thread that
// plays a script of expected commands and canned replies, events and junk,
// sent in arbitrary fragments with delays.
//
//   FakePeer peer(tmp.file("qmp.sock"));
//   peer.greet().expect("query-status").reply(R"({"status": "running"})");
//   peer.start();
//   ... drive a QmpClient against peer.path() ...
//   EXPECT_EQ(peer.finish(), "");
//
// "@ID@" in sent text stands for the id of the last command read: its "id"
// member, or arguments.id for guest-sync-delimited.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "json/json.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {

// Slack for a client's timeout to fire on a loaded machine, yet small enough
// to catch a client that waits far longer than asked.
constexpr std::chrono::milliseconds kMargin{500};

class FakePeer
{
public:
	using Duration = std::chrono::milliseconds;

	// Listens on `socketPath` at once, so clients may connect before start().
	explicit FakePeer(std::string socketPath);
	~FakePeer();
	FakePeer(const FakePeer &) = delete;
	FakePeer &operator=(const FakePeer &) = delete;

	const std::string &path() const { return path_; }

	// Script steps, run in order by start()'s thread.
	// The QMP greeting, then qmp_capabilities and its empty return.
	FakePeer &greet();
	// Reads one command and fails the script unless it executes `command`.
	FakePeer &expect(const std::string &command);
	// Reads one byte and fails the script unless it is 0xFF.
	FakePeer &expectDelimiter();
	// 0xFF then guest-sync-delimited, as GuestAgentClient::sync sends them.
	FakePeer &expectSync();
	// Sends `text` (with @ID@ substituted) in pieces of `chunk` bytes (all
	// at once if 0), pausing `delay` after each piece.
	FakePeer &send(const std::string &text, size_t chunk = 0, Duration delay = Duration(0));
	// {"return": VALUE, "id": @ID@} for QMP.
	FakePeer &reply(const std::string &value = "{}");
	// {"error": {"class": ..., "desc": ...}, "id": @ID@}.
	FakePeer &replyError(const std::string &errorClass, const std::string &desc);
	FakePeer &pause(Duration duration);
	// Closes the connection.
	FakePeer &hangUp();

	// Accepts one client and plays the script on a thread. After the last
	// step the connection stays open until the client closes it or finish().
	void start();

	// Stops the thread and returns "" if every step ran as scripted, else
	// what went wrong (an unexpected command, a step never reached, data
	// the client sent after the last step...). A send in progress is
	// completed without its remaining delays, as the client may rightly be
	// done before the trailing bytes of a fragmented send went out.
	std::string finish();

	// The commands read, in order; valid after finish().
	const std::vector<virtsnap::Json> &received() const { return received_; }

private:
	struct Step {
		std::string what;
		std::function<bool(std::string &failure)> run;
	};

	void run();
	bool acceptClient(std::string &failure);
	// Waits for readable data on the client; false on stop, EOF or timeout.
	bool fill(std::string &failure);
	bool readCommand(virtsnap::Json &message, std::string &failure);
	bool sendBytes(const std::string &bytes, std::string &failure);
	// Sleeps, waking early (false) if finish() was called.
	bool sleep(Duration duration);

	std::string path_;
	int listenFd_ = -1;
	int clientFd_ = -1;
	int stopPipe_[2] = {-1, -1};
	std::vector<Step> steps_;
	std::thread thread_;
	std::string buffer_;
	std::string lastId_ = "null";
	std::vector<virtsnap::Json> received_;
	std::string failure_;
	bool finished_ = false;
};

// A test of a `Client` (qmp::QmpClient, qmp::GuestAgentClient) against a
// FakePeer on a socket named `socketName` in a TempDir of its own.
template<typename Client>
class FakePeerTest : public ::testing::Test
{
protected:
	FakePeerTest(const std::string &prefix, const std::string &socketName)
		: tmp(prefix), peer(tmp.file(socketName))
	{
	}

	// The client connected to the peer; nullptr, and a failure of the
	// test, when it cannot connect.
	std::unique_ptr<Client> connect()
	{
		auto client = Client::connect(peer.path(), std::chrono::milliseconds(5000));
		EXPECT_TRUE(client) << client.error().toString();
		return client ? std::move(*client) : nullptr;
	}

	TempDir tmp;
	FakePeer peer;
};

} // namespace virtsnap::test
