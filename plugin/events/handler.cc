#include "events/handler.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/process.h"
#include "events/output_forwarder.h"

namespace virtsnap::events {

namespace {

bool endsWith(std::string_view s, std::string_view suffix)
{
	return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
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

// One handler run once started: its input on the way in, its output on the
// way to our stderr, and the clock.
class HandlerSession
{
public:
	HandlerSession(Process child, std::string_view input, const HandlerLimits &limits)
		: child_(std::move(child)), input_(input), limits_(limits), forward_(limits.outputPrefix, writeStderr),
		  ownDeadline_(Clock::now() + limits.timeout), watchWake_(limits.wakeFd >= 0)
	{
		setNonBlocking(child_.stdinPipe().get());
		setNonBlocking(child_.stdoutPipe().get());
	}

	// Until the handler exits, or the grace after its SIGTERM is over.
	void supervise()
	{
		while (!exited_) {
			Clock::time_point now = Clock::now();
			Clock::time_point deadline = ownDeadline_;
			if (limits_.cutoff)
				deadline = std::min(deadline, limits_.cutoff());
			if (!termSent_ && now >= deadline) {
				child_.kill(SIGTERM);
				termSent_ = true;
				ownTimeout_ = now >= ownDeadline_;
				killAt_ = now + limits_.killGrace;
				child_.stdinPipe().reset();
			}
			if (termSent_ && now >= killAt_)
				break;
			pollOnce(pollMillis((termSent_ ? killAt_ : deadline) - now));
		}
	}

	// Reaps the handler and says how it went.
	HandlerRun finish()
	{
		// On a timeout the group goes too: members that ignored SIGTERM,
		// and anything the handler left running. The leader is still
		// unreaped here, so its process group id cannot have been reused.
		if (termSent_)
			child_.kill(SIGKILL);
		HandlerRun run;
		run.pid = child_.pid();
		run.waitStatus = child_.wait();
		if (child_.stdoutPipe().isValid()) {
			// What it wrote before exiting; not waiting for EOF, which a
			// background child holding the pipe could postpone forever.
			pump(child_.stdoutPipe().get(), forward_);
		}
		forward_.finish();

		int status = run.waitStatus;
		if (termSent_) {
			std::string why = "stopped at shutdown";
			if (ownTimeout_)
				why = "timed out after " + std::to_string(limits_.timeout.count()) + " ms";
			run.outcome = HandlerRun::Outcome::TimedOut;
			run.message = why + ", " + describeStatus(status);
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			run.outcome = HandlerRun::Outcome::Succeeded;
		} else {
			run.outcome = HandlerRun::Outcome::Failed;
			run.message = describeStatus(status);
		}
		return run;
	}

private:
	void pollOnce(int waitMs)
	{
		UniqueFd &in = child_.stdinPipe();
		UniqueFd &out = child_.stdoutPipe();
		pollfd fds[4];
		int n = 0, exitIdx = -1, inIdx = -1, outIdx = -1, wakeIdx = -1;
		if (child_.exitFd() >= 0) {
			exitIdx = n;
			fds[n++] = {child_.exitFd(), POLLIN, 0};
		}
		if (in.isValid()) {
			inIdx = n;
			fds[n++] = {in.get(), POLLOUT, 0};
		}
		if (out.isValid()) {
			outIdx = n;
			fds[n++] = {out.get(), POLLIN, 0};
		}
		if (watchWake_) {
			wakeIdx = n;
			fds[n++] = {limits_.wakeFd, POLLIN, 0};
		}
		// Without a pidfd (kernels before 5.3) we look every 20 ms.
		if (exitIdx < 0)
			waitMs = std::min(waitMs, 20);
		// An error is not expected; the exit check below runs all the same.
		::poll(fds, nfds_t(n), waitMs);

		if (inIdx >= 0 && fds[inIdx].revents)
			writeInput();
		if (outIdx >= 0 && fds[outIdx].revents && !pump(out.get(), forward_))
			out.reset();
		// The cutoff is read again at the top of the loop; the wake fd
		// stays readable, so polling it again would spin.
		if (wakeIdx >= 0 && fds[wakeIdx].revents)
			watchWake_ = false;
		if (exitIdx >= 0 ? (fds[exitIdx].revents != 0 && child_.hasExited()) : child_.hasExited())
			exited_ = true;
	}

	void writeInput()
	{
		UniqueFd &in = child_.stdinPipe();
		while (written_ < input_.size()) {
			ssize_t w = ::write(in.get(), input_.data() + written_, input_.size() - written_);
			if (w > 0) {
				written_ += size_t(w);
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
			written_ = input_.size();
		}
		if (written_ == input_.size())
			in.reset(); // EOF: the event is complete
	}

	Process child_;
	std::string_view input_;
	const HandlerLimits &limits_;
	OutputForwarder forward_;
	const Clock::time_point ownDeadline_;
	bool watchWake_;
	size_t written_ = 0;
	bool exited_ = false, termSent_ = false, ownTimeout_ = false;
	Clock::time_point killAt_{};
};

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
	SpawnOptions options;
	options.in = Stdio::pipe();
	options.out = Stdio::pipe();
	options.err = Stdio::sameAsStdout();
	options.searchPath = false;
	// Whatever else the daemon has open (sockets, store files) stays out of
	// the handler, even fds some library opened without O_CLOEXEC.
	options.closeOtherFds = true;
	// Its own process group, so a timeout can kill what the handler started
	// too (a shell script's `sleep`); an empty signal mask and default
	// dispositions, whatever this thread blocks (SIGPIPE) or the daemon
	// ignores.
	options.ownProcessGroup = true;
	options.defaultSignals = true;
	options.nameInError = false; // the log line names the handler
	auto child = Process::spawn({program.string()}, options);
	if (!child) {
		HandlerRun run;
		run.message = child.error().message;
		return run;
	}
	HandlerSession session(std::move(*child), input, limits);
	session.supervise();
	return session.finish();
}

} // namespace virtsnap::events
