#include "tests/support/virtsnapd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "json/json.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A read-only request with a short answer.
constexpr const char *kProbe = R"({"command": "describe-snapshots", "options": {"max-results": ["5"]}})"
			       "\n";

// The first line `socket` answers kProbe with, waiting at most `limit`;
// "" when nothing listens or nothing whole came back.
std::string askOnce(const std::string &socket, std::chrono::milliseconds limit)
{
	int fd = connectToSocket(socket);
	if (fd < 0)
		return "";
	timeval tv{static_cast<time_t>(limit.count() / 1000), static_cast<suseconds_t>(limit.count() % 1000 * 1000)};
	::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	std::string line;
	if (::send(fd, kProbe, std::strlen(kProbe), MSG_NOSIGNAL) == ssize_t(std::strlen(kProbe))) {
		char buf[4096];
		for (;;) {
			ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			line.append(buf, size_t(n));
			if (line.find('\n') != std::string::npos)
				break;
		}
	}
	::close(fd);
	size_t nl = line.find('\n');
	return nl == std::string::npos ? "" : line.substr(0, nl);
}

} // namespace

int connectToSocket(const std::string &socket)
{
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	if (socket.size() >= sizeof(addr.sun_path))
		return -1;
	std::memcpy(addr.sun_path, socket.c_str(), socket.size());
	int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
		int saved = errno;
		::close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

::testing::AssertionResult Virtsnapd::start(const std::vector<std::string> &extraArgs,
					   const std::vector<std::string> &extraEnv)
{
	if (running())
		return ::testing::AssertionFailure() << "virtsnapd is running already (pid " << pid_ << ")";
	std::string bin = envOr("VIRTSNAPD_BIN");
	if (bin.empty())
		return ::testing::AssertionFailure() << "VIRTSNAPD_BIN is not set (meson sets it)";
	std::vector<std::string> argv{bin,	 "--foreground", "--store",	   options_.store,
				      "--key-file", options_.keyFile, "--socket",	   options_.socket,
				      "--events-log", options_.eventsLog, "--events-dir", options_.eventsDir};
	argv.insert(argv.end(), options_.args.begin(), options_.args.end());
	argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
	int log = ::open(options_.logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log < 0)
		return ::testing::AssertionFailure()
		       << "cannot open " << options_.logFile << ": " << std::strerror(errno);
	// spawn() asks for SIGKILL should the test die: no daemon stays behind.
	std::vector<std::string> env{"TMPDIR=" + options_.tmpDir};
	env.insert(env.end(), extraEnv.begin(), extraEnv.end());
	pid_t pid = spawn(argv, log, log, env);
	int spawnErrno = errno;
	::close(log);
	if (pid < 0)
		return ::testing::AssertionFailure() << "fork: " << std::strerror(spawnErrno);
	pid_ = pid;

	auto deadline = Clock::now() + 20s;
	for (;;) {
		int status = 0;
		if (::waitpid(pid_, &status, WNOHANG) == pid_) {
			pid_ = -1;
			return ::testing::AssertionFailure()
			       << "virtsnapd exited (status " << status << ") before it answered on " << options_.socket
			       << "; its log:\n"
			       << readFile(options_.logFile);
		}
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
		if (left <= 0ms)
			break;
		std::string reply = askOnce(options_.socket, left);
		auto parsed = Json::parse(reply);
		if (parsed && parsed->has("ok"))
			return ::testing::AssertionSuccess();
		std::this_thread::sleep_for(50ms);
	}
	return ::testing::AssertionFailure() << "virtsnapd did not answer on " << options_.socket
					     << " within 20 s; its log:\n"
					     << readFile(options_.logFile);
}

void Virtsnapd::stop(int signal)
{
	if (!running())
		return;
	::kill(pid_, signal);
	int status = 0;
	auto deadline = Clock::now() + 60s;
	while (::waitpid(pid_, &status, WNOHANG) == 0) {
		if (Clock::now() >= deadline) {
			ADD_FAILURE() << "virtsnapd (pid " << pid_ << ") did not stop within 60 s of signal " << signal
				      << "; killed";
			::kill(pid_, SIGKILL);
			::waitpid(pid_, &status, 0);
			break;
		}
		std::this_thread::sleep_for(10ms);
	}
	pid_ = -1;
}

} // namespace virtsnap::test
