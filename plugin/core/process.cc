#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "unique_fd.h"

extern char **environ;

namespace virtsnap {

namespace {

std::string lastLine(std::string s)
{
	while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
		s.pop_back();
	auto pos = s.rfind('\n');
	return pos == std::string::npos ? s : s.substr(pos + 1);
}

} // namespace

Result<std::string> runProgram(const std::vector<std::string> &argv, const char *errorCode)
{
	int outPipe[2], errPipe[2];
	if (::pipe2(outPipe, O_CLOEXEC) != 0)
		return failErrno("pipe", errno);
	if (::pipe2(errPipe, O_CLOEXEC) != 0) {
		::close(outPipe[0]);
		::close(outPipe[1]);
		return failErrno("pipe", errno);
	}
	UniqueFd outRead(outPipe[0]), outWrite(outPipe[1]), errRead(errPipe[0]), errWrite(errPipe[1]);

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&actions, outWrite.get(), 1);
	posix_spawn_file_actions_adddup2(&actions, errWrite.get(), 2);

	std::vector<char *> args;
	for (const std::string &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);

	pid_t pid;
	int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
	posix_spawn_file_actions_destroy(&actions);
	if (rc != 0)
		return fail(errorCode, "cannot run " + argv[0] + ": " + std::strerror(rc));
	outWrite.reset();
	errWrite.reset();

	std::string out, err;
	pollfd fds[2] = {{outRead.get(), POLLIN, 0}, {errRead.get(), POLLIN, 0}};
	int open = 2;
	while (open > 0) {
		if (::poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
			if (n > 0) {
				(i == 0 ? out : err).append(buf, size_t(n));
			} else if (n == 0 || errno != EINTR) {
				fds[i].fd = -1;
				open--;
			}
		}
	}
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return fail(errorCode, argv[0] + " failed: " + lastLine(err.empty() ? out : err));
	return out;
}

} // namespace virtsnap
