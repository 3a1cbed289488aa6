// What every test binary needs from its surroundings: external tools that
// may be missing, scratch directories, and running helper programs.
//
// A test that needs a tool starts with REQUIRE_TOOL("qemu-system-x86_64")
// (or REQUIRE_QEMU()): without the tool it is skipped on a developer machine
// but fails when CI=true, where a skip would hide a broken runner.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"

namespace virtsnap::test {

inline constexpr uint64_t kMiB = 1 << 20;
using virtsnap::kGiB; // the same entity wherever both are seen

// True when the environment variable CI is "true".
bool inCi();

// The tool's full path if `name` is an executable on PATH.
std::optional<std::string> findTool(const std::string &name);

// A fresh directory, removed with everything in it on destruction: under
// $TMPDIR (else /tmp), as every program's temporary files are, unless the
// caller names another parent for a reason of its own. Throws when it cannot
// be made: a test must not go on with an empty path, whose files would land
// in /. (gtest reports the exception as the test's failure.)
class TempDir
{
public:
	// `prefix` becomes the start of the directory's name.
	explicit TempDir(const std::string &prefix = "vs-test", const std::string &parent = "");
	~TempDir();
	TempDir(const TempDir &) = delete;
	TempDir &operator=(const TempDir &) = delete;

	const std::string &path() const { return path_; }
	// path() + "/" + name.
	std::string file(const std::string &name) const;

private:
	std::string path_;
};

// The environment variable `name`, or `fallback` when it is not set.
std::string envOr(const char *name, const std::string &fallback = "");

// The source tree (VIRTSNAP_SOURCE_DIR, set by meson), "." when unset.
std::string sourceDir();
// sourceDir() + "/" + relative.
std::string sourcePath(const std::string &relative);

// The file's bytes from `offset` on; "" when it cannot be read, as a file a
// test waits for may not exist yet.
std::string readFile(const std::string &path, size_t offset = 0);
// readFile() of a file the test needs: a failure of the current test when
// it cannot be opened.
std::string readRequiredFile(const std::string &path);

// The lines of `text` that are not empty, without their newlines.
std::vector<std::string> lines(const std::string &text);

// The time since `start`, for checks of how long something took.
std::chrono::milliseconds since(std::chrono::steady_clock::time_point start);

// Held while a test adds or removes system users and the group virtsnap:
// the integration tests run in several processes at once, and one must
// not delete the group another's users are in (nor race it for
// /etc/passwd's lock).
class HostUsersLock
{
public:
	HostUsersLock();
	~HostUsersLock();
	HostUsersLock(const HostUsersLock &) = delete;
	HostUsersLock &operator=(const HostUsersLock &) = delete;

private:
	int fd_;
};

// A process stopped with SIGSTOP, as a hung host process is (not a paused
// guest: nothing answers at all), until resume() or the end of the scope.
class StoppedProcess
{
public:
	explicit StoppedProcess(pid_t pid);
	~StoppedProcess() { resume(); }
	StoppedProcess(const StoppedProcess &) = delete;
	StoppedProcess &operator=(const StoppedProcess &) = delete;
	bool stopped() const { return pid_ > 0; }
	void resume();

private:
	pid_t pid_;
};

// The permission bits of `path` (st_mode & 07777); a failure of the current
// test when it cannot be stat'ed.
mode_t fileMode(const std::string &path);

// Regular files under `dir`, recursively, whose name contains `part`
// (".tmp-"), sorted.
std::vector<std::filesystem::path> filesContaining(const std::filesystem::path &dir, const std::string &part);

// Starts argv[0] (looked up on PATH) with stdin from /dev/null, stdout on
// `outFd`, stderr on `errFd`, and the test's environment but for `env`
// ("NAME=VALUE" each, replacing NAME). The child gets SIGKILL should the
// calling thread die, so a test that crashes leaves nothing running: call it
// from the thread that waits for the child. Its pid, or -1 with errno set.
pid_t spawn(const std::vector<std::string> &argv, int outFd, int errFd, const std::vector<std::string> &env = {});

// Runs argv[0] (looked up on PATH) with stdout and stderr captured into
// `output` (if given). Returns the exit status, 128 + signal when killed,
// or -1 if it could not be started.
int runCommand(const std::vector<std::string> &argv, std::string *output = nullptr);

// `qemu-img create -f FORMAT PATH SIZE` ("64M", "1G", ...); false with the
// tool's output in `error` on failure.
bool createImage(const std::string &path, const std::string &format, const std::string &size,
		 std::string *error = nullptr);

// `qemu-img convert -f FROM_FORMAT -O TO_FORMAT FROM TO`; false with the
// tool's output in `error` on failure.
bool convertImage(const std::string &from, const std::string &fromFormat, const std::string &to,
		  const std::string &toFormat, std::string *error = nullptr);

} // namespace virtsnap::test

// Skips (or, under CI=true, fails) the current test when `tool` is not on
// PATH. A macro because GTEST_SKIP and FAIL return from the caller; usable
// in a test body or a fixture's SetUp().
#define REQUIRE_TOOL(tool)                                                                        \
	do {                                                                                       \
		if (!::virtsnap::test::findTool(tool)) {                                           \
			if (::virtsnap::test::inCi())                                              \
				FAIL() << (tool) << " is not on PATH (required when CI=true)";     \
			else                                                                       \
				GTEST_SKIP() << (tool) << " is not on PATH";                       \
		}                                                                                  \
	} while (0)

// The tools a test running a real QEMU needs.
#define REQUIRE_QEMU()                                                                            \
	do {                                                                                       \
		REQUIRE_TOOL("qemu-system-x86_64");                                                \
		REQUIRE_TOOL("qemu-img");                                                          \
	} while (0)
