// The one spawner (plugin/core/process.h): where a child's streams go, what
// it inherits, how it is waited for and stopped, and runProgram's errors.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "core/process.h"
#include "tests/support/test_env.h"

namespace virtsnap {
namespace {

using namespace std::chrono_literals;

std::string readAll(UniqueFd &fd)
{
	std::string out;
	char buf[4096];
	for (ssize_t n; (n = ::read(fd.get(), buf, sizeof(buf))) != 0;) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		out.append(buf, size_t(n));
	}
	return out;
}

// Neither running nor a zombie: gone, or reaped.
bool gone(pid_t pid)
{
	if (::kill(pid, 0) != 0)
		return true;
	std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
	std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
	auto close = text.rfind(')');
	return close != std::string::npos && text.substr(close + 2, 1) == "Z";
}

bool exitedWith(int status, int code)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == code;
}

TEST(Spawn, ChildrenNeverSeeTheS3CredentialsOfOurEnvironment)
{
	::setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	::setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG", 1);
	::setenv("AWS_SESSION_TOKEN", "token-example", 1);
	::setenv("VIRTSNAP_TEST_KEPT", "kept", 1);
	auto out = runProgram({"env"});
	for (const char *name : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "VIRTSNAP_TEST_KEPT"})
		::unsetenv(name);
	ASSERT_TRUE(out) << out.error().toString();
	EXPECT_EQ(out->find("AKIDEXAMPLE"), std::string::npos);
	EXPECT_EQ(out->find("wJalrXUtnFEMI"), std::string::npos);
	EXPECT_EQ(out->find("token-example"), std::string::npos);
	EXPECT_NE(out->find("VIRTSNAP_TEST_KEPT=kept"), std::string::npos) << "the rest of the environment goes on";
}

TEST(RunProgram, ReturnsStdout)
{
	auto out = runProgram({"sh", "-c", "echo one; echo two >&2"});
	ASSERT_TRUE(out) << out.error().toString();
	EXPECT_EQ(*out, "one\n");
}

TEST(RunProgram, FailsWithItsCodeAndTheLastLineOfStderr)
{
	auto r = runProgram({"sh", "-c", "echo out; echo first >&2; echo last >&2; exit 3"}, errc::kHypervisor);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kHypervisor);
	EXPECT_EQ(r.error().message, "sh failed: last");
	// Nothing on stderr: stdout's last line.
	r = runProgram({"sh", "-c", "echo a; echo b; exit 1"});
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kIo);
	EXPECT_EQ(r.error().message, "sh failed: b");
}

TEST(RunProgram, AProgramThatCannotRunIsNamed)
{
	auto r = runProgram({"/nonexistent/virtsnap-helper"}, errc::kHypervisor);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kHypervisor);
	EXPECT_EQ(r.error().message, "cannot run /nonexistent/virtsnap-helper: No such file or directory");
}

TEST(Spawn, WithoutNameInErrorTheCallerNamesIt)
{
	SpawnOptions options;
	options.nameInError = false;
	auto p = Process::spawn({"/nonexistent/virtsnap-helper"}, options);
	ASSERT_FALSE(p);
	EXPECT_EQ(p.error().message, "cannot run: No such file or directory");
}

TEST(Spawn, WithoutPathSearchANameIsNotLookedUp)
{
	SpawnOptions options;
	options.searchPath = false;
	EXPECT_FALSE(Process::spawn({"true"}, options)); // no ./true here
	auto p = Process::spawn({"true"});
	ASSERT_TRUE(p) << p.error().toString();
	EXPECT_TRUE(exitedWith(p->wait(), 0));
}

TEST(Spawn, ExtraEnvironmentReplacesOursOfItsName)
{
	::setenv("VIRTSNAP_TEST_EXTRA", "ours", 1);
	SpawnOptions options;
	options.out = Stdio::pipe();
	options.extraEnv = {"VIRTSNAP_TEST_EXTRA=theirs", "VIRTSNAP_TEST_NEW=new"};
	auto p = Process::spawn({"sh", "-c", "env | grep ^VIRTSNAP_TEST_ | sort"}, options);
	::unsetenv("VIRTSNAP_TEST_EXTRA");
	ASSERT_TRUE(p) << p.error().toString();
	EXPECT_EQ(readAll(p->stdoutPipe()), "VIRTSNAP_TEST_EXTRA=theirs\nVIRTSNAP_TEST_NEW=new\n");
	EXPECT_TRUE(exitedWith(p->wait(), 0));
}

TEST(Spawn, StdinPipeInStdoutPipeOutStderrWithIt)
{
	SpawnOptions options;
	options.in = Stdio::pipe();
	options.out = Stdio::pipe();
	options.err = Stdio::sameAsStdout();
	auto p = Process::spawn({"sh", "-c", "cat; echo err >&2"}, options);
	ASSERT_TRUE(p) << p.error().toString();
	ASSERT_EQ(::write(p->stdinPipe().get(), "hello ", 6), 6);
	p->stdinPipe().reset();
	EXPECT_EQ(readAll(p->stdoutPipe()), "hello err\n");
	EXPECT_FALSE(p->stderrPipe().isValid());
	EXPECT_TRUE(exitedWith(p->wait(), 0));
}

TEST(Spawn, OutputToAFileOfItsOwn)
{
	test::TempDir dir("vs-process");
	SpawnOptions options;
	options.out = Stdio::toFile(dir.file("log"));
	options.err = Stdio::sameAsStdout();
	auto p = Process::spawn({"sh", "-c", "echo out; echo err >&2"}, options);
	ASSERT_TRUE(p) << p.error().toString();
	EXPECT_TRUE(exitedWith(p->wait(), 0));
	std::ifstream in(dir.file("log"));
	std::stringstream ss;
	ss << in.rdbuf();
	EXPECT_EQ(ss.str(), "out\nerr\n");
	struct stat st {};
	ASSERT_EQ(::stat(dir.file("log").c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Spawn, StdinIsDevNullUnlessSaidOtherwise)
{
	SpawnOptions options;
	options.out = Stdio::pipe();
	auto p = Process::spawn({"sh", "-c", "cat; echo end"}, options);
	ASSERT_TRUE(p) << p.error().toString();
	EXPECT_EQ(readAll(p->stdoutPipe()), "end\n");
	EXPECT_TRUE(exitedWith(p->wait(), 0));
}

TEST(Spawn, CloseOtherFdsKeepsOurDescriptorsOut)
{
	UniqueFd leaky(::open("/dev/null", O_RDONLY)); // no O_CLOEXEC
	ASSERT_TRUE(leaky.isValid());
	std::string probe = "test -e /proc/self/fd/" + std::to_string(leaky.get()) + " && echo open || echo closed";
	for (bool close : {false, true}) {
		SpawnOptions options;
		options.out = Stdio::pipe();
		options.closeOtherFds = close;
		auto p = Process::spawn({"sh", "-c", probe}, options);
		ASSERT_TRUE(p) << p.error().toString();
		EXPECT_EQ(readAll(p->stdoutPipe()), close ? "closed\n" : "open\n");
		(void)p->wait();
	}
}

TEST(Spawn, DefaultSignalsClearsTheMaskTheCallerBlocks)
{
	// In a thread of its own, so the test thread's mask stays as it was.
	std::string masks[2];
	std::thread t([&] {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &set, nullptr);
		for (int i = 0; i < 2; i++) {
			SpawnOptions options;
			options.out = Stdio::pipe();
			options.defaultSignals = i == 1;
			auto p = Process::spawn({"grep", "^SigBlk", "/proc/self/status"}, options);
			if (!p)
				return;
			masks[i] = readAll(p->stdoutPipe());
			(void)p->wait();
		}
	});
	t.join();
	EXPECT_EQ(masks[0], "SigBlk:\t0000000000001000\n"); // SIGPIPE, 13
	EXPECT_EQ(masks[1], "SigBlk:\t0000000000000000\n");
}

// The death signal's path (fork() and exec) sets the child up as
// posix_spawn does: pipes, a file, 2>&1, kept descriptors, the group, the
// mask, the environment, and a program that cannot run named.
TEST(Spawn, ChildrenThatDieWithUsAreSetUpAsAnyOther)
{
	test::TempDir dir("vs-process");
	UniqueFd kept(::open(dir.file("kept").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	ASSERT_TRUE(kept.isValid());
	std::string held = heldOpenPath(kept.get());
	std::string outputs[2];
	for (int i = 0; i < 2; i++) {
		SpawnOptions options;
		options.dieWithParent = i == 1;
		options.in = Stdio::pipe();
		options.out = Stdio::pipe();
		options.err = Stdio::sameAsStdout();
		options.keepFds = {kept.get()};
		options.ownProcessGroup = true;
		options.defaultSignals = true;
		options.extraEnv = {"VIRTSNAP_TEST_EXTRA=theirs"};
		std::string script = "read line; echo \"$line\"; echo err >&2; echo kept > " + held +
				     "; echo $VIRTSNAP_TEST_EXTRA; ps -o pgid= -p $$ | tr -d ' ';"
				     " echo $$; grep ^SigBlk /proc/self/status";
		auto p = Process::spawn({"sh", "-c", script}, options);
		ASSERT_TRUE(p) << p.error().toString();
		ASSERT_EQ(::write(p->stdinPipe().get(), "in\n", 3), 3);
		p->stdinPipe().reset();
		std::string out = readAll(p->stdoutPipe());
		EXPECT_TRUE(exitedWith(p->wait(), 0)) << out;
		// The group and the pid are the child's own: equal, whatever they are.
		std::istringstream lines(out);
		std::string in, err, extra, pgid, pid, mask;
		std::getline(lines, in), std::getline(lines, err), std::getline(lines, extra);
		std::getline(lines, pgid), std::getline(lines, pid), std::getline(lines, mask);
		EXPECT_EQ(pgid, pid) << out;
		outputs[i] = in + "|" + err + "|" + extra + "|" + mask;
		std::ifstream keptFile(dir.file("kept"));
		std::string word;
		EXPECT_TRUE(keptFile >> word && word == "kept") << "kept descriptor, " << (i ? "fork" : "posix_spawn");
		ASSERT_EQ(::ftruncate(kept.get(), 0), 0);
	}
	EXPECT_EQ(outputs[0], "in|err|theirs|SigBlk:\t0000000000000000");
	EXPECT_EQ(outputs[1], outputs[0]);

	SpawnOptions options;
	options.dieWithParent = true;
	auto missing = Process::spawn({"virtsnap-no-such-program"}, options);
	ASSERT_FALSE(missing);
	EXPECT_EQ(missing.error().message, "cannot run virtsnap-no-such-program: No such file or directory");
}

// PR_SET_PDEATHSIG fires when the thread that spawned the child ends (as
// when the whole process is killed): the child goes with it.
TEST(Spawn, AChildThatDiesWithUsGoesWithTheThreadThatStartedIt)
{
	for (bool dies : {false, true}) {
		pid_t pid = -1;
		std::optional<Process> child;
		std::thread t([&] {
			SpawnOptions options;
			options.dieWithParent = dies;
			auto p = Process::spawn({"sleep", "60"}, options);
			if (p) {
				pid = p->pid();
				child.emplace(std::move(*p));
			}
		});
		t.join();
		ASSERT_GT(pid, 0);
		if (dies) {
			// Reaped by us once the signal came; bounded by the test's timeout.
			ASSERT_TRUE(child->waitFor(30s)) << "the child outlived the thread that started it";
			EXPECT_TRUE(WIFSIGNALED(child->wait()) && WTERMSIG(child->wait()) == SIGKILL);
		} else {
			EXPECT_FALSE(child->waitFor(200ms)) << "a child of a thread that ended dies only if asked to";
		}
	}
}

TEST(Process, HasExitedLeavesItUnreapedUntilWait)
{
	SpawnOptions options;
	auto p = Process::spawn({"sh", "-c", "exit 7"}, options);
	ASSERT_TRUE(p) << p.error().toString();
	auto deadline = std::chrono::steady_clock::now() + 5s;
	while (!p->hasExited() && std::chrono::steady_clock::now() < deadline)
		std::this_thread::sleep_for(5ms);
	ASSERT_TRUE(p->hasExited());
	EXPECT_FALSE(p->reaped());
	EXPECT_EQ(::kill(p->pid(), 0), 0) << "a zombie still has its pid";
	EXPECT_TRUE(exitedWith(p->wait(), 7));
	EXPECT_TRUE(p->reaped());
	EXPECT_NE(::kill(p->pid(), 0), 0);
}

TEST(Process, WaitForTimesOutThenStopKillsAndReaps)
{
	auto p = Process::spawn({"sleep", "60"});
	ASSERT_TRUE(p) << p.error().toString();
	EXPECT_FALSE(p->waitFor(0ms));
	EXPECT_FALSE(p->waitFor(50ms));
	auto status = p->stop(5s);
	ASSERT_TRUE(status);
	EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL);
	EXPECT_TRUE(p->reaped());
	EXPECT_EQ(p->waitFor(0ms), status);
}

TEST(Process, KillReachesTheWholeGroupOfItsOwn)
{
	SpawnOptions options;
	options.out = Stdio::pipe();
	options.ownProcessGroup = true;
	auto p = Process::spawn({"sh", "-c", "sleep 60 & echo $!; wait"}, options);
	ASSERT_TRUE(p) << p.error().toString();
	std::string line;
	char c;
	while (::read(p->stdoutPipe().get(), &c, 1) == 1 && c != '\n')
		line += c;
	pid_t sleeper = pid_t(std::stol(line));
	EXPECT_EQ(::getpgid(sleeper), p->pid());
	p->kill(SIGKILL);
	EXPECT_TRUE(WIFSIGNALED(p->wait()));
	auto deadline = std::chrono::steady_clock::now() + 5s;
	while (!gone(sleeper) && std::chrono::steady_clock::now() < deadline)
		std::this_thread::sleep_for(5ms);
	EXPECT_TRUE(gone(sleeper));
}

TEST(Process, OneDestroyedUnreapedIsStoppedAndReaped)
{
	pid_t pid = -1;
	{
		auto p = Process::spawn({"sleep", "60"});
		ASSERT_TRUE(p) << p.error().toString();
		pid = p->pid();
	}
	EXPECT_NE(::kill(pid, 0), 0) << "neither running nor left a zombie";
}

TEST(Process, AMovedFromProcessOwnsNothing)
{
	auto p = Process::spawn({"sh", "-c", "exit 4"});
	ASSERT_TRUE(p) << p.error().toString();
	Process moved(std::move(*p));
	EXPECT_TRUE(p->reaped());
	EXPECT_EQ(p->waitFor(0ms), 0);
	EXPECT_TRUE(exitedWith(moved.wait(), 4));
}

TEST(LastLine, WithoutItsLineEnd)
{
	EXPECT_EQ(lastLine("a\nb\r\n\n"), "b");
	EXPECT_EQ(lastLine("only"), "only");
	EXPECT_EQ(lastLine(""), "");
}

} // namespace
} // namespace virtsnap
