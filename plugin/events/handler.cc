#include "events/handler.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

extern char **environ;

namespace virtsnap::events {

namespace {

constexpr size_t kMaxForwarded = 64 * 1024;
constexpr size_t kMaxLine = 4096;

bool endsWith(std::string_view s, std::string_view suffix)
{
	return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

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

Result<std::pair<UniqueFd, UniqueFd>> makePipe()
{
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) != 0)
		return failErrno("pipe", errno);
	auto r = aboveStdio(fds[0]);
	auto w = aboveStdio(fds[1]);
	if (!r)
		return std::unexpected(r.error());
	if (!w)
		return std::unexpected(w.error());
	return std::pair(std::move(*r), std::move(*w));
}

void setNonBlocking(int fd)
{
	int flags = ::fcntl(fd, F_GETFL);
	if (flags >= 0)
		::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void writeStderr(const std::string &s)
{
	// One write per line, so lines of concurrent writers do not interleave.
	size_t off = 0;
	while (off < s.size()) {
		ssize_t n = ::write(2, s.data() + off, s.size() - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		off += size_t(n);
	}
}

// Copies a handler's output to our stderr line by line, each line after a
// prefix naming the handler, so its messages land in the daemon's journal
// attributed. Bounded, so a chatty handler cannot flood the journal.
class OutputForwarder
{
public:
	explicit OutputForwarder(std::string prefix) : prefix_(std::move(prefix)) {}

	void feed(const char *data, size_t n)
	{
		if (prefix_.empty())
			return;
		for (size_t i = 0; i < n; i++) {
			if (data[i] == '\n' || partial_.size() >= kMaxLine)
				flushLine();
			if (data[i] != '\n')
				partial_.push_back(data[i]);
		}
	}

	void finish()
	{
		if (!partial_.empty())
			flushLine();
	}

private:
	void flushLine()
	{
		if (forwarded_ >= kMaxForwarded) {
			if (!truncated_)
				writeStderr(prefix_ + "(further output discarded)\n");
			truncated_ = true;
		} else {
			forwarded_ += partial_.size();
			writeStderr(prefix_ + partial_ + "\n");
		}
		partial_.clear();
	}

	std::string prefix_;
	std::string partial_;
	size_t forwarded_ = 0;
	bool truncated_ = false;
};

// Reads what is there without blocking; false at EOF or on an error.
bool pump(int fd, OutputForwarder &out)
{
	char buf[4096];
	for (;;) {
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n > 0) {
			out.feed(buf, size_t(n));
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
}

// Consumes the SIGPIPE a write to a closed pipe left pending on this
// thread (blocked, so it did nothing), so none is ever delivered later.
void consumeSigpipe()
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	timespec zero{0, 0};
	while (::sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {
	}
}

// True once the child has exited; it stays unreaped (a zombie) so its pid
// and process group id cannot be reused before we are done signalling.
bool hasExited(pid_t pid)
{
	siginfo_t info{};
	if (::waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
		return errno != EINTR; // ECHILD: nothing left to wait for
	return info.si_pid == pid;
}

std::string describeStatus(int status)
{
	if (WIFEXITED(status))
		return "exit status " + std::to_string(WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
	return "wait status " + std::to_string(status);
}

int pollMillis(Clock::duration d)
{
	auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
	return int(std::clamp<int64_t>(ms, 0, 60 * 60 * 1000));
}

} // namespace

bool isHandlerName(std::string_view name)
{
	if (name.empty() || name.front() == '.' || name.back() == '~')
		return false;
	if (name.find(".dpkg-") != std::string_view::npos || name.find(".ucf-") != std::string_view::npos)
		return false;
	for (std::string_view s : {".rpmsave", ".rpmorig", ".rpmnew", ".swp"})
		if (endsWith(name, s))
			return false;
	return true;
}

Result<std::vector<fs::path>> listHandlers(const fs::path &dir)
{
	std::vector<fs::path> found;
	std::error_code ec;
	fs::directory_iterator it(dir, ec);
	if (ec) {
		if (ec == std::errc::no_such_file_or_directory)
			return found;
		return fail(errc::kIo, "cannot list " + dir.string() + ": " + ec.message());
	}
	for (; it != fs::directory_iterator(); it.increment(ec)) {
		if (ec)
			return fail(errc::kIo, "cannot list " + dir.string() + ": " + ec.message());
		fs::path p = it->path();
		if (!isHandlerName(p.filename().native()))
			continue;
		struct stat st;
		if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (::access(p.c_str(), X_OK) != 0)
			continue;
		found.push_back(std::move(p));
	}
	std::sort(found.begin(), found.end(),
		  [](const fs::path &a, const fs::path &b) { return a.filename().native() < b.filename().native(); });
	return found;
}

HandlerRun runHandler(const fs::path &program, std::string_view input, const HandlerLimits &limits)
{
	HandlerRun run;
	auto in = makePipe();
	if (!in) {
		run.message = in.error().message;
		return run;
	}
	auto out = makePipe();
	if (!out) {
		run.message = out.error().message;
		return run;
	}
	UniqueFd inRead = std::move(in->first), inWrite = std::move(in->second);
	UniqueFd outRead = std::move(out->first), outWrite = std::move(out->second);

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, inRead.get(), 0);
	posix_spawn_file_actions_adddup2(&actions, outWrite.get(), 1);
	posix_spawn_file_actions_adddup2(&actions, outWrite.get(), 2);
	// Whatever else the daemon has open (sockets, store files) stays out of
	// the handler, even fds some library opened without O_CLOEXEC.
	posix_spawn_file_actions_addclosefrom_np(&actions, 3);

	// Its own process group, so a timeout can kill what the handler started
	// too (a shell script's `sleep`); an empty signal mask and default
	// dispositions, whatever this thread blocks (SIGPIPE) or the daemon
	// ignores.
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);

	std::string path = program.string();
	char *argv[] = {path.data(), nullptr};
	pid_t pid = -1;
	int rc = ::posix_spawn(&pid, path.c_str(), &actions, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		run.message = std::string("cannot run: ") + std::strerror(rc);
		return run;
	}
	run.pid = pid;
	inRead.reset();
	outWrite.reset();
	setNonBlocking(inWrite.get());
	setNonBlocking(outRead.get());

	// A pidfd turns "the child exited" into a poll event; without one
	// (kernels before 5.3) we look every 20 ms.
	UniqueFd pidFd(int(::syscall(SYS_pidfd_open, pid, 0)));

	OutputForwarder forward(limits.outputPrefix);
	const Clock::time_point ownDeadline = Clock::now() + limits.timeout;
	bool watchWake = limits.wakeFd >= 0;
	size_t written = 0;
	bool exited = false, termSent = false, ownTimeout = false;
	Clock::time_point killAt{};

	while (!exited) {
		Clock::time_point now = Clock::now();
		Clock::time_point deadline = ownDeadline;
		if (limits.cutoff)
			deadline = std::min(deadline, limits.cutoff());
		if (!termSent && now >= deadline) {
			::kill(-pid, SIGTERM);
			termSent = true;
			ownTimeout = now >= ownDeadline;
			killAt = now + limits.killGrace;
			inWrite.reset();
		}
		if (termSent && now >= killAt)
			break;

		pollfd fds[4];
		int n = 0, pidIdx = -1, inIdx = -1, outIdx = -1, wakeIdx = -1;
		if (pidFd.isValid()) {
			pidIdx = n;
			fds[n++] = {pidFd.get(), POLLIN, 0};
		}
		if (inWrite.isValid()) {
			inIdx = n;
			fds[n++] = {inWrite.get(), POLLOUT, 0};
		}
		if (outRead.isValid()) {
			outIdx = n;
			fds[n++] = {outRead.get(), POLLIN, 0};
		}
		if (watchWake) {
			wakeIdx = n;
			fds[n++] = {limits.wakeFd, POLLIN, 0};
		}
		int waitMs = pollMillis((termSent ? killAt : deadline) - now);
		if (!pidFd.isValid())
			waitMs = std::min(waitMs, 20);
		if (::poll(fds, nfds_t(n), waitMs) < 0 && errno != EINTR)
			waitMs = 0; // not expected; fall through to the exit check

		if (inIdx >= 0 && fds[inIdx].revents) {
			while (written < input.size()) {
				ssize_t w = ::write(inWrite.get(), input.data() + written, input.size() - written);
				if (w > 0) {
					written += size_t(w);
					continue;
				}
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0 && errno == EAGAIN)
					break;
				// EPIPE: it closed stdin without reading all of it,
				// which is its right; nothing more to give it.
				if (errno == EPIPE)
					consumeSigpipe();
				written = input.size();
			}
			if (written == input.size())
				inWrite.reset(); // EOF: the event is complete
		}
		if (outIdx >= 0 && fds[outIdx].revents && !pump(outRead.get(), forward))
			outRead.reset();
		// The cutoff is read again at the top of the loop; the wake fd
		// stays readable, so polling it again would spin.
		if (wakeIdx >= 0 && fds[wakeIdx].revents)
			watchWake = false;
		if (pidIdx >= 0 ? (fds[pidIdx].revents != 0 && hasExited(pid)) : hasExited(pid))
			exited = true;
	}

	// On a timeout the group goes too: members that ignored SIGTERM, and
	// anything the handler left running. The leader is still unreaped here,
	// so its process group id cannot have been reused.
	if (termSent)
		::kill(-pid, SIGKILL);
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	run.waitStatus = status;
	if (outRead.isValid()) {
		// What it wrote before exiting; not waiting for EOF, which a
		// background child holding the pipe could postpone forever.
		pump(outRead.get(), forward);
	}
	forward.finish();

	if (termSent) {
		run.outcome = HandlerRun::Outcome::TimedOut;
		run.message = (ownTimeout ? "timed out after " + std::to_string(limits.timeout.count()) + " ms"
					  : std::string("stopped at shutdown")) +
			      ", " + describeStatus(status);
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		run.outcome = HandlerRun::Outcome::Succeeded;
	} else {
		run.outcome = HandlerRun::Outcome::Failed;
		run.message = describeStatus(status);
	}
	return run;
}

} // namespace virtsnap::events
