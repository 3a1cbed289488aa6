// Event handlers: the executables in the handler directory, run once per
// event the way run-parts runs a directory, with the event on stdin.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace virtsnap::events {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// False for names run-parts-style tools leave alone: dotfiles, editor
// backups (*~) and package-manager leftovers (*.dpkg-old, *.rpmnew, ...),
// so an upgrade's saved copy of a handler never runs beside the new one.
bool isHandlerName(std::string_view name);

// The regular files in `dir` (symlinks followed) that we may execute and
// whose names pass isHandlerName, sorted bytewise by name. A missing
// directory has no handlers; other errors are returned.
Result<std::vector<fs::path>> listHandlers(const fs::path &dir);

struct HandlerLimits {
	// SIGTERM (to the handler's whole process group) when it runs longer...
	std::chrono::milliseconds timeout{10000};
	// ...then SIGKILL to the group when it is still there after this.
	std::chrono::milliseconds killGrace{1000};
	// An earlier time to stop at (the owner shutting down), read on every
	// wake-up. `wakeFd`, if given, is polled (never read) so a change of
	// cutoff is seen at once; it is ignored after it was once readable.
	std::function<Clock::time_point()> cutoff;
	int wakeFd = -1;
	// Prefix for the handler's output lines on our stderr ("" drops them).
	std::string outputPrefix;
};

struct HandlerRun {
	enum class Outcome { Succeeded, Failed, TimedOut, NotStarted };
	Outcome outcome = Outcome::NotStarted;
	pid_t pid = -1;
	int waitStatus = 0;
	std::string message; // why it failed, for the log line
};

// Runs `program` (no shell, no PATH lookup) in a process group of its own,
// stdin a pipe carrying `input` then EOF, stdout and stderr a pipe whose
// lines are copied to our stderr after `outputPrefix` (at most 64 KiB per
// run). Returns once the handler is reaped: no zombie is left behind. A
// handler that closes stdin early is not an error; the caller must block
// SIGPIPE in the calling thread (the write then fails with EPIPE; the
// pending signal is consumed here).
HandlerRun runHandler(const fs::path &program, std::string_view input, const HandlerLimits &limits);

} // namespace virtsnap::events
