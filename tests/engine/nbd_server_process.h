// An NBD server the engine tests start (nbdkit, qemu-nbd) on a unix socket
// in a private directory, killed at the end of the scope.
#pragma once

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/socket_probe.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {

class NbdServerProcess
{
public:
	explicit NbdServerProcess(const std::string &dirPrefix) : dir_(dirPrefix) {}
	~NbdServerProcess()
	{
		// SIGKILL: a test may have stopped it (SIGSTOP), and a stopped
		// process would not act on SIGTERM.
		if (pid_ > 0) {
			::kill(pid_, SIGKILL);
			::waitpid(pid_, nullptr, 0);
		}
	}

	const std::string &socket() const { return socket_; }
	// Runs `argv` (which names socket()) and waits up to 10 s for the socket
	// to answer, or for the server to exit.
	void start(const std::vector<std::string> &argv)
	{
		pid_ = spawn(argv, STDERR_FILENO, STDERR_FILENO);
		for (int i = 0; i < 1000 && pid_ > 0 && !socketAnswers(socket_); i++) {
			if (::waitpid(pid_, nullptr, WNOHANG) == pid_)
				pid_ = -1;
			std::this_thread::sleep_for(std::chrono::milliseconds(10));
		}
	}
	bool up() const { return pid_ > 0 && socketAnswers(socket_); }
	pid_t pid() const { return pid_; }

private:
	TempDir dir_;
	std::string socket_ = dir_.file("nbd.sock");
	pid_t pid_ = -1;
};

} // namespace virtsnap::test
