// A virtsnapd of the build under test (VIRTSNAPD_BIN, set by meson) for one
// test: started in the foreground with the test's store, socket and event
// paths, ready once it answers a request, stopped by its pid.
//
//   Virtsnapd daemon_{{.store = ..., .keyFile = ..., .socket = ..., ...}};
//   ASSERT_TRUE(daemon_.start({"--max-parallel-jobs", "1"}));
//   ...
//   daemon_.stop(SIGKILL); // or nothing: the destructor sends SIGTERM
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace virtsnap::test {

struct VirtsnapdOptions {
	std::string store;
	std::string keyFile;
	std::string socket;
	std::string eventsLog;
	std::string eventsDir;
	std::string tmpDir;            // its $TMPDIR: where its captures make their work directories
	std::string logFile;           // its stdout and stderr, appended to
	std::vector<std::string> args; // more options, on every start
};

// A new connection to the unix socket `socket`, or -1 (errno says why).
// The caller closes it.
int connectToSocket(const std::string &socket);

class Virtsnapd
{
public:
	explicit Virtsnapd(VirtsnapdOptions options) : options_(std::move(options)) {}
	~Virtsnapd() { stop(); }
	Virtsnapd(const Virtsnapd &) = delete;
	Virtsnapd &operator=(const Virtsnapd &) = delete;

	const VirtsnapdOptions &options() const { return options_; }

	// Starts it with the options and `extraArgs`, and `extraEnv` ("NAME=VALUE"
	// each) over the test's environment. Ready means it answered a
	// request on its socket: the socket file may be a dead daemon's, and a
	// live daemon listens before it has recovered the jobs a killed one
	// left, while connections wait. A failure, with its log, when it exits
	// or does not answer within 20 s.
	::testing::AssertionResult start(const std::vector<std::string> &extraArgs = {},
					 const std::vector<std::string> &extraEnv = {});

	// Sends `signal` to its pid and reaps it; nothing when it is not
	// running. A daemon that ignores SIGTERM for 60 s is a failure of the
	// current test, and gets SIGKILL.
	void stop(int signal = SIGTERM);

	bool running() const { return pid_ > 0; }
	pid_t pid() const { return pid_; }

private:
	VirtsnapdOptions options_;
	pid_t pid_ = -1;
};

} // namespace virtsnap::test
