// One handler run on its own: what it gets on stdin, what it prints, and how
// it is stopped when it overstays.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "events/handler.h"
#include "events_test_util.h"
#include "tests/support/test_env.h"

namespace virtsnap::events::test {
namespace {

// runHandler's contract: the calling thread blocks SIGPIPE. A thread of its
// own, so the test thread's mask (inherited by later Dispatchers' threads)
// stays as it was.
HandlerRun runBlocked(const fs::path &program, std::string_view input, const HandlerLimits &limits)
{
	HandlerRun run;
	std::thread t([&] {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &set, nullptr);
		run = runHandler(program, input, limits);
	});
	t.join();
	return run;
}

HandlerLimits quick(std::chrono::milliseconds timeout = 5000ms)
{
	HandlerLimits l;
	l.timeout = timeout;
	return l;
}

TEST(HandlerNames, SkipsWhatRunPartsSkips)
{
	for (const char *ok : {"10-notify", "a", "handler.sh", "x_y", "UPPER"})
		EXPECT_TRUE(isHandlerName(ok)) << ok;
	for (const char *no : {"", ".hidden", "notify~", "notify.dpkg-old", "notify.dpkg-dist", "notify.dpkg-new",
			       "n.rpmsave", "n.rpmnew", "n.rpmorig", "n.ucf-old", ".notify.swp"})
		EXPECT_FALSE(isHandlerName(no)) << no;
}

TEST(HandlerList, RegularExecutablesSortedByName)
{
	virtsnap::test::TempDir dir("vs-events");
	writeScript(dir.file("20-b"), "exit 0");
	writeScript(dir.file("10-a"), "exit 0");
	writeScript(dir.file("30-noexec"), "exit 0", 0644);
	writeScript(dir.file(".dot"), "exit 0");
	writeScript(dir.file("10-a~"), "exit 0");
	writeScript(dir.file("10-a.dpkg-old"), "exit 0");
	ASSERT_EQ(::mkdir(dir.file("40-dir").c_str(), 0755), 0);
	ASSERT_EQ(::symlink(dir.file("20-b").c_str(), dir.file("25-link").c_str()), 0);
	ASSERT_EQ(::symlink("/nonexistent", dir.file("26-dangling").c_str()), 0);

	auto found = listHandlers(dir.path());
	ASSERT_TRUE(found) << found.error().toString();
	std::vector<std::string> names;
	for (const auto &p : *found)
		names.push_back(p.filename().string());
	EXPECT_EQ(names, (std::vector<std::string>{"10-a", "20-b", "25-link"}));
}

TEST(HandlerList, MissingDirectoryHasNoHandlers)
{
	auto found = listHandlers("/nonexistent/virtsnap-handlers");
	ASSERT_TRUE(found);
	EXPECT_TRUE(found->empty());
}

TEST(HandlerRunTest, GetsInputOnStdinAndSucceeds)
{
	virtsnap::test::TempDir dir("vs-events");
	writeScript(dir.file("h"), "cat > " + dir.file("got"));
	std::string input = "{\"a\":1}\n";
	HandlerRun run = runBlocked(dir.file("h"), input, quick());
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::Succeeded) << run.message;
	EXPECT_EQ(readFile(dir.file("got")), input);
	EXPECT_FALSE(isRunning(run.pid));
}

TEST(HandlerRunTest, NonZeroExitIsAFailure)
{
	virtsnap::test::TempDir dir("vs-events");
	writeScript(dir.file("h"), "exit 3");
	HandlerRun run = runBlocked(dir.file("h"), "x\n", quick());
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::Failed);
	EXPECT_EQ(run.message, "exit status 3");
}

TEST(HandlerRunTest, UnrunnableProgramIsNotStarted)
{
	virtsnap::test::TempDir dir("vs-events");
	writeFile(dir.file("noshebang"), "\x7f" "ELF garbage", 0755);
	HandlerRun run = runBlocked(dir.file("noshebang"), "x\n", quick());
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::NotStarted);
	EXPECT_NE(run.message.find("cannot run"), std::string::npos) << run.message;
	run = runBlocked(dir.file("missing"), "x\n", quick());
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::NotStarted);
}

TEST(HandlerRunTest, ClosingStdinEarlyIsNotAnError)
{
	virtsnap::test::TempDir dir("vs-events");
	writeScript(dir.file("h"), "exec 0<&-\nexit 0");
	// Far more than a pipe holds, so the write certainly meets EPIPE.
	std::string input(4 << 20, 'x');
	HandlerRun run = runBlocked(dir.file("h"), input, quick());
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::Succeeded) << run.message;
}

TEST(HandlerRunTest, TimeoutKillsTheWholeGroupAndReaps)
{
	virtsnap::test::TempDir dir("vs-events");
	// The shell waits on a background child: SIGTERM to the shell alone
	// would leave `sleep` running.
	writeScript(dir.file("h"), "echo $$ > " + dir.file("pid") + "\nsleep 60 &\necho $! > " + dir.file("child") +
					   "\nwait");
	auto start = std::chrono::steady_clock::now();
	HandlerRun run = runBlocked(dir.file("h"), "x\n", quick(500ms));
	auto elapsed = std::chrono::steady_clock::now() - start;
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::TimedOut);
	EXPECT_NE(run.message.find("timed out after 500 ms"), std::string::npos) << run.message;
	EXPECT_GE(elapsed, 500ms);
	EXPECT_LT(elapsed, 1400ms);
	pid_t pid = readPid(dir.file("pid"));
	pid_t child = readPid(dir.file("child"));
	ASSERT_GT(pid, 0);
	ASSERT_GT(child, 0);
	EXPECT_EQ(pid, run.pid);
	// Reaped: not even a zombie is left of the handler itself.
	EXPECT_NE(::kill(pid, 0), 0);
	EXPECT_EQ(errno, ESRCH);
	EXPECT_TRUE(waitFor([&] { return !isRunning(child); }, 1000ms)) << "background child " << child;
	EXPECT_TRUE(waitFor([&] { return !groupRunning(pid); }, 1000ms));
}

TEST(HandlerRunTest, IgnoringSigtermEarnsSigkillAfterTheGrace)
{
	virtsnap::test::TempDir dir("vs-events");
	writeScript(dir.file("h"), "trap '' TERM\necho $$ > " + dir.file("pid") + "\nwhile :; do sleep 0.05; done");
	HandlerLimits limits = quick(300ms);
	limits.killGrace = 300ms;
	auto start = std::chrono::steady_clock::now();
	HandlerRun run = runBlocked(dir.file("h"), "x\n", limits);
	auto elapsed = std::chrono::steady_clock::now() - start;
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::TimedOut);
	ASSERT_TRUE(WIFSIGNALED(run.waitStatus));
	EXPECT_EQ(WTERMSIG(run.waitStatus), SIGKILL);
	EXPECT_GE(elapsed, 600ms);
	EXPECT_LT(elapsed, 1500ms);
	// SIGKILL is sent, not awaited, for the group's other members.
	EXPECT_TRUE(waitFor([&] { return !groupRunning(run.pid); }, 1000ms));
}

TEST(HandlerRunTest, CutoffStopsItEarly)
{
	virtsnap::test::TempDir dir("vs-events");
	writeScript(dir.file("h"), "exec sleep 60");
	HandlerLimits limits = quick(60000ms);
	auto cutoff = std::chrono::steady_clock::now() + 300ms;
	limits.cutoff = [cutoff] { return cutoff; };
	auto start = std::chrono::steady_clock::now();
	HandlerRun run = runBlocked(dir.file("h"), "x\n", limits);
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::TimedOut);
	EXPECT_NE(run.message.find("shutdown"), std::string::npos) << run.message;
	EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
}

TEST(HandlerRunTest, OutputGoesToStderrWithPrefix)
{
	virtsnap::test::TempDir dir("vs-events");
	writeScript(dir.file("h"), "echo to-stdout\necho to-stderr >&2\nprintf partial");
	// Our stderr, briefly a file.
	int saved = ::dup(2);
	ASSERT_GE(saved, 0);
	int file = ::open(dir.file("stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ASSERT_GE(file, 0);
	::dup2(file, 2);
	HandlerLimits limits = quick();
	limits.outputPrefix = "PFX: ";
	HandlerRun run = runBlocked(dir.file("h"), "x\n", limits);
	::dup2(saved, 2);
	::close(saved);
	::close(file);
	EXPECT_EQ(run.outcome, HandlerRun::Outcome::Succeeded) << run.message;
	EXPECT_EQ(readFile(dir.file("stderr")), "PFX: to-stdout\nPFX: to-stderr\nPFX: partial\n");
}

} // namespace
} // namespace virtsnap::events::test
