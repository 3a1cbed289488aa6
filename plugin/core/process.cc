#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>
#include <utility>

extern char **environ;

namespace virtsnap {

namespace {

// What a Process destructor gives a child it has to stop.
constexpr std::chrono::milliseconds kStopGrace{5000};

// Moves a pipe end above stdin/stdout/stderr: were it 0, 1 or 2 (a daemon
// started with them closed), the child's dup2 sequence could overwrite one
// end with another before copying it.
Result<UniqueFd> aboveStdio(int fd)
{
	UniqueFd owned(fd);
	if (fd > 2)
		return owned;
	int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (moved < 0)
		return failErrno("fcntl", errno);
	return UniqueFd(moved);
}

// Read end, write end; both close-on-exec.
Result<std::pair<UniqueFd, UniqueFd>> makePipe()
{
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) != 0)
		return failErrno("pipe", errno);
	auto r = aboveStdio(fds[0]);
	auto w = aboveStdio(fds[1]);
	VS_TRY(r);
	VS_TRY(w);
	return std::pair(std::move(*r), std::move(*w));
}

// posix_spawn's file actions and attributes, freed on every return.
struct SpawnPlan {
	SpawnPlan()
	{
		posix_spawn_file_actions_init(&actions);
		posix_spawnattr_init(&attr);
	}
	~SpawnPlan()
	{
		posix_spawn_file_actions_destroy(&actions);
		posix_spawnattr_destroy(&attr);
	}
	SpawnPlan(const SpawnPlan &) = delete;
	SpawnPlan &operator=(const SpawnPlan &) = delete;

	// Sets up the child's `fd` as `stdio` says; a pipe's end for the
	// child is kept in `childEnd` until the spawn, ours goes to `ourEnd`.
	Result<void> redirect(int fd, const Stdio &stdio, UniqueFd &childEnd, UniqueFd &ourEnd)
	{
		switch (stdio.kind) {
		case Stdio::Kind::Inherit:
			break;
		case Stdio::Kind::Null:
			posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
			break;
		case Stdio::Kind::Pipe: {
			VS_ASSIGN(auto ends, makePipe());
			childEnd = std::move(fd == 0 ? ends.first : ends.second);
			ourEnd = std::move(fd == 0 ? ends.second : ends.first);
			posix_spawn_file_actions_adddup2(&actions, childEnd.get(), fd);
			break;
		}
		case Stdio::Kind::File:
			posix_spawn_file_actions_addopen(&actions, fd, stdio.file.c_str(),
							 fd == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC, 0600);
			break;
		case Stdio::Kind::SameAsStdout:
			posix_spawn_file_actions_adddup2(&actions, 1, fd);
			break;
		}
		return {};
	}

	void setAttributes(const SpawnOptions &options)
	{
		short flags = 0;
		if (options.ownProcessGroup) {
			flags |= POSIX_SPAWN_SETPGROUP;
			posix_spawnattr_setpgroup(&attr, 0);
		}
		if (options.defaultSignals) {
			flags |= POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
			sigset_t none, all;
			sigemptyset(&none);
			sigfillset(&all);
			posix_spawnattr_setsigmask(&attr, &none);
			posix_spawnattr_setsigdefault(&attr, &all);
		}
		posix_spawnattr_setflags(&attr, flags);
		if (options.closeOtherFds)
			posix_spawn_file_actions_addclosefrom_np(&actions, 3);
		// dup2 onto itself clears close-on-exec (glibc 2.29 and later).
		for (int fd : options.keepFds)
			posix_spawn_file_actions_adddup2(&actions, fd, fd);
	}

	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
};

// Reads both pipes to their end.
void readBoth(UniqueFd &outPipe, UniqueFd &errPipe, std::string &out, std::string &err)
{
	pollfd fds[2] = {{outPipe.get(), POLLIN, 0}, {errPipe.get(), POLLIN, 0}};
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
}

// The environment a child gets: ours without the secrets virtsnap reads
// from its own (S3 credentials), which no helper needs and none may see,
// and with `extra`'s entries over ours of their names.
std::vector<char *> childEnvironment(const std::vector<std::string> &extra)
{
	static constexpr std::string_view kSecrets[] = {"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=",
							 "AWS_SESSION_TOKEN="};
	std::vector<char *> env;
	for (char **e = environ; *e; e++) {
		std::string_view entry(*e);
		bool secret = false;
		for (std::string_view s : kSecrets)
			secret |= entry.starts_with(s);
		for (const std::string &x : extra)
			secret |= entry.starts_with(x.substr(0, x.find('=') + 1));
		if (!secret)
			env.push_back(*e);
	}
	for (const std::string &x : extra)
		env.push_back(const_cast<char *>(x.c_str()));
	env.push_back(nullptr);
	return env;
}

} // namespace

Result<Process> Process::spawn(const std::vector<std::string> &argv, const SpawnOptions &options)
{
	Process p;
	p.ownGroup_ = options.ownProcessGroup;
	SpawnPlan plan;
	UniqueFd childEnds[3];
	VS_TRY(plan.redirect(0, options.in, childEnds[0], p.in_));
	VS_TRY(plan.redirect(1, options.out, childEnds[1], p.out_));
	VS_TRY(plan.redirect(2, options.err, childEnds[2], p.err_));
	plan.setAttributes(options);

	std::vector<char *> args;
	for (const std::string &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);
	std::vector<char *> env = childEnvironment(options.extraEnv);
	int rc = options.searchPath
			 ? ::posix_spawnp(&p.pid_, args[0], &plan.actions, &plan.attr, args.data(), env.data())
			 : ::posix_spawn(&p.pid_, args[0], &plan.actions, &plan.attr, args.data(), env.data());
	if (rc != 0) {
		p.pid_ = -1;
		return fail(options.errorCode,
			    "cannot run" + (options.nameInError ? " " + argv[0] : "") + ": " + std::strerror(rc));
	}
	p.exitFd_.reset(int(::syscall(SYS_pidfd_open, p.pid_, 0)));
	return p;
}

// The one moved from counts as reaped: it has no child to wait for or
// signal (waitpid(-1) would wait for any).
Process::Process(Process &&other) noexcept
	: pid_(std::exchange(other.pid_, -1)), ownGroup_(other.ownGroup_),
	  reaped_(std::exchange(other.reaped_, true)), givenUp_(other.givenUp_), status_(other.status_),
	  in_(std::move(other.in_)), out_(std::move(other.out_)), err_(std::move(other.err_)),
	  exitFd_(std::move(other.exitFd_))
{
}

Process::~Process()
{
	if (pid_ > 0 && !reaped_ && !givenUp_)
		(void)stop(kStopGrace);
}

bool Process::hasExited()
{
	if (reaped_)
		return true;
	siginfo_t info{};
	if (::waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
		return errno != EINTR; // ECHILD: nothing left to wait for
	return info.si_pid == pid_;
}

int Process::wait()
{
	if (reaped_)
		return status_;
	int status = 0;
	while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
	}
	reaped_ = true;
	status_ = status;
	return status_;
}

std::optional<int> Process::waitFor(std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	for (;;) {
		if (reaped_)
			return status_;
		int status = 0;
		pid_t r = ::waitpid(pid_, &status, WNOHANG);
		if (r == pid_ || (r < 0 && errno == ECHILD)) {
			reaped_ = true;
			status_ = r == pid_ ? status : 0;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0)
			return std::nullopt;
		// Without a pidfd, a look every 20 ms.
		if (exitFd_.isValid()) {
			pollfd fd{exitFd_.get(), POLLIN, 0};
			::poll(&fd, 1, int(std::min<int64_t>(left.count(), 60 * 60 * 1000)));
		} else {
			std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(20)));
		}
	}
}

void Process::kill(int signal)
{
	if (pid_ > 0 && !reaped_)
		::kill(ownGroup_ ? -pid_ : pid_, signal);
}

std::optional<int> Process::stop(std::chrono::milliseconds grace)
{
	kill(SIGKILL);
	auto status = waitFor(grace);
	givenUp_ = !status;
	return status;
}

Result<std::string> runProgram(const std::vector<std::string> &argv, const char *errorCode,
				const std::vector<int> &keepFds)
{
	SpawnOptions options;
	options.keepFds = keepFds;
	options.out = Stdio::pipe();
	options.err = Stdio::pipe();
	options.errorCode = errorCode;
	VS_ASSIGN(Process child, Process::spawn(argv, options));
	std::string out, err;
	readBoth(child.stdoutPipe(), child.stderrPipe(), out, err);
	int status = child.wait();
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return fail(errorCode, argv[0] + " failed: " + lastLine(err.empty() ? out : err));
	return out;
}

std::string heldOpenPath(int fd)
{
	return "/proc/self/fd/" + std::to_string(fd);
}

std::string lastLine(std::string s)
{
	while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
		s.pop_back();
	auto pos = s.rfind('\n');
	return pos == std::string::npos ? s : s.substr(pos + 1);
}

} // namespace virtsnap
