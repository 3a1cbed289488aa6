// Helper programs (qemu-img, qemu-storage-daemon, event handlers) run as
// child processes, started without a shell: argv goes straight to exec, so
// there is no quoting problem. Secrets go in neither argv nor the
// environment (the child gets ours): other users can read both in /proc.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "error.h"
#include "unique_fd.h"

namespace virtsnap {

// Where one of a child's standard streams goes.
struct Stdio {
	enum class Kind { Inherit, Null, Pipe, File, SameAsStdout };
	Kind kind = Kind::Inherit;
	std::filesystem::path file; // Kind::File

	// Ours, shared with the child.
	static Stdio inherit() { return {Kind::Inherit, {}}; }
	static Stdio null() { return {Kind::Null, {}}; }
	// A pipe to or from us: its other end is the Process's.
	static Stdio pipe() { return {Kind::Pipe, {}}; }
	// Opened by the child: read for stdin; else created or truncated, mode 0600.
	static Stdio toFile(std::filesystem::path path) { return {Kind::File, std::move(path)}; }
	// For stderr: wherever stdout goes (2>&1).
	static Stdio sameAsStdout() { return {Kind::SameAsStdout, {}}; }
};

struct SpawnOptions {
	Stdio in = Stdio::null();
	Stdio out = Stdio::inherit();
	Stdio err = Stdio::inherit();
	// argv[0] looked up in PATH; else run as the path it is.
	bool searchPath = true;
	// A process group of its own, which the child leads: kill() then
	// reaches whatever it started too.
	bool ownProcessGroup = false;
	// An empty signal mask and default dispositions in the child, whatever
	// the calling thread blocks or this process ignores.
	bool defaultSignals = false;
	// SIGKILL for the child when the thread that spawned it ends, and so
	// when this process dies, SIGKILLed or not: a helper that serves only
	// us (qemu-nbd) never outlives us. Not for a child meant to stay (an
	// export's nbdkit), nor from a thread that ends before the child
	// should. (fork() and exec: posix_spawn cannot set it.)
	bool dieWithParent = false;
	// Nothing open in the child but its stdin, stdout and stderr, not even
	// descriptors some library opened without O_CLOEXEC.
	bool closeOtherFds = false;
	// Descriptors of ours the child keeps under the same numbers, for it
	// to open as /proc/self/fd/N (heldOpenPath): a file we hold, never
	// whatever its name leads to by then. (Not /proc/OURPID/fd/N: once a
	// thread changed its file-system uid (core/acting_as.h) this process
	// is not dumpable, and a child without CAP_SYS_PTRACE, as under
	// virtsnapd's unit, may not look into it.) Not with closeOtherFds.
	std::vector<int> keepFds;
	// "NAME=value" entries the child's environment has besides ours (over
	// ours of that name): where a helper keeps its files ($TMPDIR), never
	// a secret.
	std::vector<std::string> extraEnv;
	// The error's code when the program cannot be run at all.
	const char *errorCode = errc::kIo;
	// "cannot run ARGV0: why"; false for "cannot run: why", where the
	// caller's message names the program already.
	bool nameInError = true;
};

// A child process. One not yet reaped when its Process goes is stopped
// (see stop()): no child outlives its owner unnoticed.
class Process
{
public:
	static Result<Process> spawn(const std::vector<std::string> &argv, const SpawnOptions &options = {});
	Process(Process &&other) noexcept;
	// Not assignable, which would have to stop the child it held.
	Process &operator=(Process &&) = delete;
	~Process();

	pid_t pid() const { return pid_; }
	// Our ends of the pipes asked for (Stdio::pipe()), invalid otherwise.
	// Resetting stdin's gives the child EOF.
	UniqueFd &stdinPipe() { return in_; }
	UniqueFd &stdoutPipe() { return out_; }
	UniqueFd &stderrPipe() { return err_; }
	// Readable once the child has exited (a pidfd), for poll(); -1 on
	// kernels without pidfd_open (before 5.3).
	int exitFd() const { return exitFd_.get(); }

	// True once the child has exited. It stays unreaped (a zombie), so its
	// pid and process group id cannot be reused while we still signal it.
	bool hasExited();
	// Reaps the child; its wait status (0 if it was reaped elsewhere).
	int wait();
	// Reaps it if it exits within `timeout` (0: only if it has already).
	std::optional<int> waitFor(std::chrono::milliseconds timeout);
	bool reaped() const { return reaped_; }
	// To the child, or to its group with ownProcessGroup; nothing once it
	// was reaped, when its ids may be another's.
	void kill(int signal);
	// SIGKILL, then waitFor(grace). A child that outlives that (stuck in
	// uninterruptible sleep) is given up on rather than waited for.
	std::optional<int> stop(std::chrono::milliseconds grace);

private:
	Process() = default;

	pid_t pid_ = -1;
	bool ownGroup_ = false;
	bool reaped_ = false;
	bool givenUp_ = false;
	int status_ = 0;
	UniqueFd in_, out_, err_, exitFd_;
};

// Runs argv[0] (looked up in PATH) with stdin /dev/null and waits. Returns
// its stdout; on a non-zero exit fails with `errorCode` and the last line
// of its stderr (of its stdout if it wrote nothing there).
Result<std::string> runProgram(const std::vector<std::string> &argv, const char *errorCode = errc::kIo,
				const std::vector<int> &keepFds = {});

// The path by which a child given `fd` in SpawnOptions::keepFds opens it.
std::string heldOpenPath(int fd);

// The last line of a program's output, without the line end: what an
// error message quotes of it.
std::string lastLine(std::string output);

} // namespace virtsnap
