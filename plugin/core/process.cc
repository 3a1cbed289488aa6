#include "process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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

// One thing the child does with a descriptor of its own before exec: dup2
// `from` onto `fd` (onto itself: keep it open across exec), or open
// `path` as `fd`.
struct ChildFdStep {
	int fd;
	int from = -1;
	const char *path = nullptr;
	int flags = 0;
};

// What the child does before exec, made before the spawn: either
// posix_spawn's file actions and attributes, or by hand in a child of
// fork() where posix_spawn has no attribute for it (the death signal).
struct SpawnPlan {
	// Sets up the child's `fd` as `stdio` says; a pipe's end for the
	// child is kept in `childEnd` until the spawn, ours goes to `ourEnd`.
	Result<void> redirect(int fd, const Stdio &stdio, UniqueFd &childEnd, UniqueFd &ourEnd)
	{
		switch (stdio.kind) {
		case Stdio::Kind::Inherit:
			break;
		case Stdio::Kind::Null:
			steps.push_back({fd, -1, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY});
			break;
		case Stdio::Kind::Pipe: {
			VS_ASSIGN(auto ends, makePipe());
			childEnd = std::move(fd == 0 ? ends.first : ends.second);
			ourEnd = std::move(fd == 0 ? ends.second : ends.first);
			steps.push_back({fd, childEnd.get()});
			break;
		}
		case Stdio::Kind::File:
			steps.push_back({fd, -1, stdio.file.c_str(), fd == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_TRUNC});
			break;
		case Stdio::Kind::SameAsStdout:
			steps.push_back({fd, 1});
			break;
		}
		return {};
	}

	std::vector<ChildFdStep> steps;
};

// posix_spawn's file actions and attributes for a plan, freed on every
// return.
struct PosixSpawnPlan {
	PosixSpawnPlan(const SpawnPlan &plan, const SpawnOptions &options)
	{
		posix_spawn_file_actions_init(&actions);
		posix_spawnattr_init(&attr);
		for (const ChildFdStep &step : plan.steps) {
			if (step.from >= 0)
				posix_spawn_file_actions_adddup2(&actions, step.from, step.fd);
			else
				posix_spawn_file_actions_addopen(&actions, step.fd, step.path, step.flags, 0600);
		}
		setAttributes(options);
	}
	~PosixSpawnPlan()
	{
		posix_spawn_file_actions_destroy(&actions);
		posix_spawnattr_destroy(&attr);
	}
	PosixSpawnPlan(const PosixSpawnPlan &) = delete;
	PosixSpawnPlan &operator=(const PosixSpawnPlan &) = delete;

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

// argv[0] as posix_spawnp finds it: by $PATH when it names no directory.
// Looked up before fork(): the child may call nothing that allocates.
std::string processFindProgram(const std::string &name, bool searchPath)
{
	if (!searchPath || name.find('/') != std::string::npos)
		return name;
	const char *path = std::getenv("PATH");
	std::string_view dirs = path ? path : "/bin:/usr/bin";
	for (size_t at = 0; at <= dirs.size();) {
		size_t end = std::min(dirs.find(':', at), dirs.size());
		std::string dir(dirs.substr(at, end - at));
		std::string file = (dir.empty() ? "." : dir) + "/" + name;
		if (::access(file.c_str(), X_OK) == 0)
			return file;
		at = end + 1;
	}
	return name; // execve fails with ENOENT, as posix_spawnp would
}

// What a child of fork() needs, all made before the fork.
struct ForkedChild {
	const SpawnPlan &plan;
	const SpawnOptions &options;
	pid_t parent;
	const char *file;
	char *const *argv;
	char *const *envp;
	int statusFd;        // gets errno if exec fails; closes on exec
	sigset_t parentMask; // the spawning thread's
};

// Tells the parent why the child could not run, and ends it.
[[noreturn]] void processChildFailed(int statusFd, int error)
{
	(void)!::write(statusFd, &error, sizeof error);
	::_exit(127);
}

// The child's side: only async-signal-safe calls (the parent has other
// threads, and one may have held a lock at the fork).
[[noreturn]] void processRunForkedChild(const ForkedChild &c)
{
	// Tied to the thread that forked us. Had it ended before the prctl,
	// the signal would never come: our parent is then someone else.
	if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		processChildFailed(c.statusFd, errno);
	if (::getppid() != c.parent)
		::_exit(127);
	if (c.options.ownProcessGroup && ::setpgid(0, 0) != 0)
		processChildFailed(c.statusFd, errno);
	for (const ChildFdStep &step : c.plan.steps) {
		int got = step.from >= 0 ? step.from : ::open(step.path, step.flags, 0600);
		if (got < 0 || (got != step.fd && ::dup2(got, step.fd) < 0))
			processChildFailed(c.statusFd, errno);
		if (step.from < 0 && got != step.fd)
			::close(got);
	}
	if (c.options.closeOtherFds) {
		if (c.statusFd > 3)
			::close_range(3, unsigned(c.statusFd - 1), 0);
		::close_range(unsigned(c.statusFd + 1), ~0u, 0);
	}
	for (int fd : c.options.keepFds)
		if (::fcntl(fd, F_SETFD, 0) != 0)
			processChildFailed(c.statusFd, errno);
	// Our handlers go before signals are let in: exec would reset them,
	// but a signal could come first. Ignored ones stay so unless asked.
	struct sigaction dfl = {};
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction now = {};
		if (::sigaction(sig, nullptr, &now) == 0 &&
		    (c.options.defaultSignals || (now.sa_handler != SIG_IGN && now.sa_handler != SIG_DFL)))
			(void)::sigaction(sig, &dfl, nullptr);
	}
	sigset_t mask = c.parentMask;
	if (c.options.defaultSignals)
		sigemptyset(&mask);
	::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
	::execve(c.file, c.argv, c.envp);
	processChildFailed(c.statusFd, errno);
}

// fork() and exec, where posix_spawn has no way to set the death signal.
// 0, or the errno of what failed in the child.
int processForkSpawn(pid_t &pid, const SpawnPlan &plan, const SpawnOptions &options, const std::string &file,
		     char *const *argv, char *const *envp)
{
	// Above stdio, as the child's steps may dup2 onto 0 to 2.
	auto status = makePipe();
	if (!status)
		return EMFILE;
	auto &[statusRead, statusWrite] = *status;
	ForkedChild child{plan, options, ::getpid(), file.c_str(), argv, envp, statusWrite.get(), {}};
	// No handler of ours runs in the child before exec.
	sigset_t all;
	sigfillset(&all);
	::pthread_sigmask(SIG_SETMASK, &all, &child.parentMask);
	pid = ::fork();
	if (pid == 0)
		processRunForkedChild(child);
	int forkError = errno;
	::pthread_sigmask(SIG_SETMASK, &child.parentMask, nullptr);
	if (pid < 0)
		return forkError;
	statusWrite.reset();
	int error = 0;
	ssize_t n;
	while ((n = ::read(statusRead.get(), &error, sizeof error)) < 0 && errno == EINTR) {
	}
	if (n != ssize_t(sizeof error))
		return 0; // exec closed the pipe
	while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
	}
	return error;
}

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

	std::vector<char *> args;
	for (const std::string &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);
	std::vector<char *> env = childEnvironment(options.extraEnv);
	int rc = 0;
	if (options.dieWithParent) {
		std::string file = processFindProgram(argv[0], options.searchPath);
		rc = processForkSpawn(p.pid_, plan, options, file, args.data(), env.data());
	} else {
		PosixSpawnPlan spawnPlan(plan, options);
		rc = options.searchPath ? ::posix_spawnp(&p.pid_, args[0], &spawnPlan.actions, &spawnPlan.attr,
							 args.data(), env.data())
					: ::posix_spawn(&p.pid_, args[0], &spawnPlan.actions, &spawnPlan.attr,
							args.data(), env.data());
	}
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
