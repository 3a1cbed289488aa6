// Delivery as the daemon sees it: emit() and what reaches the log, the
// handler programs and the subscribers, with handlers and subscribers that
// fail, hang or lag.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "events/dispatcher.h"
#include "events_test_util.h"
#include "tests/support/test_env.h"

namespace virtsnap::events::test {
namespace {

using virtsnap::Json;
using Clock = std::chrono::steady_clock;

Json event(int seq, const std::string &padding = "")
{
	Json e = Json::object();
	e.set("detail-type", Json::string("test"));
	e.set("seq", Json::integer(seq));
	if (!padding.empty())
		e.set("padding", Json::string(padding));
	return e;
}

int seqOf(const std::string &line)
{
	auto j = Json::parse(line);
	return j ? int(j->getInt("seq").value_or(-1)) : -1;
}

// Collects what a subscriber gets; thread-safe.
class Collector
{
public:
	std::function<bool(const std::string &)> callback()
	{
		return [this](const std::string &line) {
			std::lock_guard lock(mutex_);
			lines_.push_back(line);
			return true;
		};
	}
	std::vector<std::string> lines() const
	{
		std::lock_guard lock(mutex_);
		return lines_;
	}
	size_t count() const { return lines().size(); }
	std::vector<int> seqs() const
	{
		std::vector<int> s;
		for (const auto &l : lines())
			s.push_back(seqOf(l));
		return s;
	}

private:
	mutable std::mutex mutex_;
	std::vector<std::string> lines_;
};

// A latch a test opens once.
class Gate
{
public:
	void open()
	{
		std::lock_guard lock(mutex_);
		open_ = true;
		cv_.notify_all();
	}
	void wait()
	{
		std::unique_lock lock(mutex_);
		cv_.wait(lock, [&] { return open_; });
	}

private:
	std::mutex mutex_;
	std::condition_variable cv_;
	bool open_ = false;
};

class DispatcherTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		handlers_ = dir_.file("handlers");
		out_ = dir_.file("out");
		log_ = dir_.file("log/sub/events.jsonl"); // its directories do not exist yet
		ASSERT_EQ(::mkdir(handlers_.c_str(), 0755), 0);
		ASSERT_EQ(::mkdir(out_.c_str(), 0755), 0);
	}

	Dispatcher::Options options(std::chrono::milliseconds timeout = 5000ms)
	{
		Dispatcher::Options o;
		o.logFile = log_;
		o.handlerDir = handlers_;
		o.handlerTimeout = timeout;
		return o;
	}

	void handler(const std::string &name, const std::string &body, mode_t mode = 0755)
	{
		writeScript(handlers_ + "/" + name, body, mode);
	}

	std::vector<std::string> logLines() const { return readLines(log_); }

	// emit() and how long it took.
	static Clock::duration timedEmit(Dispatcher &d, const Json &e)
	{
		auto start = Clock::now();
		d.emit(e);
		return Clock::now() - start;
	}

	virtsnap::test::TempDir dir_{"vs-events"};
	std::string handlers_, out_, log_;
};

TEST_F(DispatcherTest, LogGetsOneLinePerEventInOrderAndAppendsAcrossRestart)
{
	for (int round = 0; round < 2; round++) {
		Dispatcher d(options());
		for (int i = 0; i < 10; i++)
			d.emit(event(round * 10 + i));
		ASSERT_TRUE(waitFor([&] { return d.stats().logged == 10; }));
	}
	auto lines = logLines();
	ASSERT_EQ(lines.size(), 20u);
	for (int i = 0; i < 20; i++) {
		auto j = Json::parse(lines[size_t(i)]);
		ASSERT_TRUE(j) << lines[size_t(i)];
		EXPECT_EQ(j->getInt("seq"), i);
		EXPECT_EQ(j->dump(), lines[size_t(i)]) << "not one compact line";
	}
	struct stat st;
	ASSERT_EQ(::stat(log_.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777 & ~mode_t(0640), 0u) << std::oct << st.st_mode;
}

TEST_F(DispatcherTest, EveryEventIsLoggedOrCountedAsDropped)
{
	Dispatcher::Options o = options();
	o.handlerDir.clear();
	o.maxQueued = 1;
	Dispatcher d(o);
	for (int i = 0; i < 300; i++)
		EXPECT_LT(timedEmit(d, event(i)), 50ms);
	// No handlers and no subscribers: the log queue is the only place an
	// event can be dropped, and none vanishes uncounted.
	ASSERT_TRUE(waitFor([&] { return d.stats().logged + d.stats().dropped == 300; }))
		<< d.stats().logged << " logged, " << d.stats().dropped << " dropped";
	auto lines = logLines();
	EXPECT_EQ(lines.size(), d.stats().logged);
	int last = -1;
	for (const auto &l : lines) {
		int seq = seqOf(l);
		EXPECT_GT(seq, last) << "out of order";
		last = seq;
	}
}

TEST_F(DispatcherTest, EmitNeverFailsWhenTheLogCannotBeWritten)
{
	writeFile(dir_.file("blocker"), "a file where a directory should be");
	Dispatcher::Options o = options();
	o.logFile = dir_.file("blocker/events.jsonl");
	Collector sub; // outlives the dispatcher, which may call it until the end
	Dispatcher d(o);
	d.subscribe(sub.callback());
	for (int i = 0; i < 3; i++)
		d.emit(event(i));
	ASSERT_TRUE(waitFor([&] { return sub.count() == 3; }));
	EXPECT_TRUE(waitFor([&] { return d.stats().logFailures == 3; }));
	EXPECT_EQ(d.stats().logged, 0u);
}

TEST_F(DispatcherTest, RotatedLogIsStartedAgain)
{
	Dispatcher d(options());
	d.emit(event(0));
	ASSERT_TRUE(waitFor([&] { return d.stats().logged == 1; }));
	ASSERT_EQ(::rename(log_.c_str(), (log_ + ".1").c_str()), 0);
	d.emit(event(1));
	ASSERT_TRUE(waitFor([&] { return d.stats().logged == 2; }));
	EXPECT_EQ(readLines(log_ + ".1").size(), 1u);
	auto lines = logLines();
	ASSERT_EQ(lines.size(), 1u);
	EXPECT_EQ(seqOf(lines[0]), 1);
}

TEST_F(DispatcherTest, HandlerGetsExactlyTheEventOnStdin)
{
	handler("record", "cat > " + out_ + "/$$.json");
	Dispatcher d(options());
	Json e = event(7, "with \"quotes\" and / slashes");
	d.emit(e);
	ASSERT_TRUE(waitFor([&] { return d.stats().handlerRuns == 1; }));
	auto files = listDir(out_);
	ASSERT_EQ(files.size(), 1u);
	EXPECT_EQ(readFile(out_ + "/" + files[0]), e.dump() + "\n");
	EXPECT_EQ(d.stats().handlerFailures, 0u);
}

TEST_F(DispatcherTest, AllHandlersRunInNameOrderForEachEvent)
{
	handler("20-second", "read line\necho second >> " + out_ + "/order");
	handler("10-first", "read line\necho first >> " + out_ + "/order");
	Dispatcher d(options());
	d.emit(event(1));
	d.emit(event(2));
	ASSERT_TRUE(waitFor([&] { return d.stats().handlerRuns == 4; }));
	EXPECT_EQ(readLines(out_ + "/order"), (std::vector<std::string>{"first", "second", "first", "second"}));
}

TEST_F(DispatcherTest, SkipsNonExecutablesDotfilesBackupsAndDirectories)
{
	for (const char *name : {".hidden", "backup~", "old.dpkg-old", "good"})
		handler(name, std::string("touch ") + out_ + "/" + name);
	handler("noexec", "touch " + out_ + "/noexec", 0644);
	ASSERT_EQ(::mkdir((handlers_ + "/dir").c_str(), 0755), 0);
	Dispatcher d(options());
	d.emit(event(1));
	ASSERT_TRUE(waitFor([&] { return d.stats().handlerRuns == 1; }));
	// One more event through the same sequential thread: the first is done.
	d.emit(event(2));
	ASSERT_TRUE(waitFor([&] { return d.stats().handlerRuns == 2; }));
	EXPECT_EQ(listDir(out_), (std::vector<std::string>{"good"}));
}

TEST_F(DispatcherTest, FailingHandlerIsCountedAndLaterEventsStillArrive)
{
	handler("10-fail", "exit 1");
	handler("20-record", "cat >> " + out_ + "/got");
	Dispatcher d(options());
	for (int i = 0; i < 3; i++)
		d.emit(event(i));
	ASSERT_TRUE(waitFor([&] { return d.stats().handlerRuns == 6; }));
	auto s = d.stats();
	EXPECT_EQ(s.handlerFailures, 3u);
	EXPECT_EQ(s.handlerTimeouts, 0u);
	auto got = readLines(out_ + "/got");
	ASSERT_EQ(got.size(), 3u);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(seqOf(got[size_t(i)]), i);
	EXPECT_EQ(logLines().size(), 3u);
}

TEST_F(DispatcherTest, HungHandlerIsKilledWhileLogAndSubscribersGoOn)
{
	// Hangs on the first event only (sleep as a child of the shell, so
	// killing just the shell would not be enough); quick afterwards.
	handler("hang", "if [ ! -e " + out_ + "/pid ]; then echo $$ > " + out_ + "/pid; sleep 60; fi\ncat > /dev/null");
	Collector sub;
	Dispatcher d(options(1500ms));
	d.subscribe(sub.callback());

	EXPECT_LT(timedEmit(d, event(0)), 50ms);
	ASSERT_TRUE(waitFor([&] { return readPid(out_ + "/pid") > 0; }));
	pid_t pid = readPid(out_ + "/pid");
	for (int i = 1; i < 4; i++)
		EXPECT_LT(timedEmit(d, event(i)), 50ms);

	// All four reach the log and the subscriber while the handler hangs.
	ASSERT_TRUE(waitFor([&] { return logLines().size() == 4 && sub.count() == 4; }, 1000ms));
	EXPECT_TRUE(isRunning(pid)) << "the handler should still be hanging now";
	EXPECT_EQ(sub.seqs(), (std::vector<int>{0, 1, 2, 3}));

	// Killed after the timeout (SIGTERM is enough for sh), reaped, group gone.
	ASSERT_TRUE(waitFor([&] { return d.stats().handlerTimeouts == 1; }, 3000ms));
	EXPECT_NE(::kill(pid, 0), 0);
	EXPECT_EQ(errno, ESRCH);
	EXPECT_TRUE(waitFor([&] { return !groupRunning(pid); }, 1000ms));
	// The queued events then reach the handler.
	EXPECT_TRUE(waitFor([&] { return d.stats().handlerRuns == 4; }));
	EXPECT_EQ(d.stats().handlerFailures, 0u);
}

TEST_F(DispatcherTest, HandlerClosingStdinDoesNotHurtTheDaemon)
{
	handler("closer", "exec 0<&-\nexit 0");
	Dispatcher d(options());
	// Larger than a pipe holds: the write certainly meets a closed pipe.
	d.emit(event(0, std::string(1 << 20, 'x')));
	d.emit(event(1));
	ASSERT_TRUE(waitFor([&] { return d.stats().handlerRuns == 2; }));
	EXPECT_EQ(d.stats().handlerFailures, 0u);
	// Still alive, and no SIGPIPE waiting for this process either.
	sigset_t pending;
	sigpending(&pending);
	EXPECT_FALSE(sigismember(&pending, SIGPIPE));
}

TEST_F(DispatcherTest, SubscribersGetEventsAndUnsubscribeStopsThem)
{
	Collector a, b;
	Dispatcher d(options());
	uint64_t idA = d.subscribe(a.callback());
	uint64_t idB = d.subscribe(b.callback());
	EXPECT_NE(idA, 0u);
	EXPECT_NE(idB, 0u);
	EXPECT_NE(idA, idB);
	for (int i = 0; i < 3; i++)
		d.emit(event(i));
	ASSERT_TRUE(waitFor([&] { return a.count() == 3 && b.count() == 3; }));
	EXPECT_EQ(a.seqs(), (std::vector<int>{0, 1, 2}));
	EXPECT_EQ(b.lines(), logLines());

	d.unsubscribe(idA);
	d.unsubscribe(idA); // twice is harmless
	d.emit(event(3));
	d.emit(event(4));
	ASSERT_TRUE(waitFor([&] { return b.count() == 5; }));
	EXPECT_EQ(a.count(), 3u);
}

TEST_F(DispatcherTest, SubscriberReturningFalseIsDropped)
{
	std::atomic<int> calls{0};
	Collector b;
	Dispatcher d(options());
	uint64_t id = d.subscribe([&](const std::string &) { return ++calls < 2; });
	d.subscribe(b.callback());
	for (int i = 0; i < 5; i++)
		d.emit(event(i));
	ASSERT_TRUE(waitFor([&] { return b.count() == 5; }));
	// One more event after it is certainly gone.
	d.emit(event(5));
	ASSERT_TRUE(waitFor([&] { return b.count() == 6; }));
	EXPECT_EQ(calls.load(), 2);
	d.unsubscribe(id); // already gone: harmless
}

TEST_F(DispatcherTest, SubscriberMayUnsubscribeItselfFromItsCallback)
{
	std::atomic<int> calls{0};
	std::atomic<uint64_t> id{0};
	Gate subscribed;
	Collector b;
	Dispatcher d(options());
	id = d.subscribe([&](const std::string &) {
		subscribed.wait();
		calls++;
		d.unsubscribe(id.load());
		return true;
	});
	subscribed.open();
	d.subscribe(b.callback());
	for (int i = 0; i < 3; i++)
		d.emit(event(i));
	ASSERT_TRUE(waitFor([&] { return b.count() == 3; }));
	EXPECT_TRUE(waitFor([&] { return calls.load() >= 1; }));
	std::this_thread::sleep_for(50ms);
	EXPECT_EQ(calls.load(), 1);
}

TEST_F(DispatcherTest, SlowSubscriberLosesOldestAndDoesNotBlockOthers)
{
	Dispatcher::Options o = options();
	o.maxQueued = 2;
	Gate entered, release;
	Collector slowGot, fast;
	Dispatcher d(o);
	// Whatever fails below, the stuck callback is let go before the
	// dispatcher's destructor waits for it.
	struct Opener {
		Gate &gate;
		~Opener() { gate.open(); }
	} opener{release};
	auto record = slowGot.callback();
	d.subscribe([&](const std::string &line) {
		record(line);
		if (seqOf(line) == 0) {
			entered.open();
			release.wait();
		}
		return true;
	});
	d.subscribe(fast.callback());

	d.emit(event(0));
	entered.wait(); // the slow one is stuck inside event 0
	// One at a time: the log stage's queue is as small as the subscriber's.
	for (int i = 1; i < 5; i++) {
		d.emit(event(i));
		ASSERT_TRUE(waitFor([&] { return fast.count() == size_t(i + 1); }, 1000ms));
	}
	EXPECT_EQ(fast.seqs(), (std::vector<int>{0, 1, 2, 3, 4}));
	// Its queue holds 2: events 1 and 2 made way for 3 and 4.
	EXPECT_EQ(d.stats().dropped, 2u);

	release.open();
	ASSERT_TRUE(waitFor([&] { return slowGot.count() == 3; }));
	EXPECT_EQ(slowGot.seqs(), (std::vector<int>{0, 3, 4}));
}

TEST_F(DispatcherTest, DestructionWithAHungHandlerIsBounded)
{
	handler("hang", "echo $$ > " + out_ + "/pid\nsleep 60");
	const auto timeout = 10000ms;
	std::optional<Dispatcher> d(std::in_place, options(timeout));
	d->emit(event(0));
	ASSERT_TRUE(waitFor([&] { return readPid(out_ + "/pid") > 0; }));
	pid_t pid = readPid(out_ + "/pid");
	ASSERT_TRUE(isRunning(pid));

	auto start = Clock::now();
	d.reset();
	auto elapsed = Clock::now() - start;
	EXPECT_LT(elapsed, timeout + 2000ms);
	// What dispatcher.h promises: the drain (1 s) and the kill grace, not
	// the handler's own timeout.
	EXPECT_LT(elapsed, 3000ms);
	EXPECT_NE(::kill(pid, 0), 0);
	EXPECT_EQ(errno, ESRCH);
	EXPECT_TRUE(waitFor([&] { return !groupRunning(pid); }, 1000ms));
}

TEST_F(DispatcherTest, HandlerQueueOverflowDropsAndCounts)
{
	handler("hang", "echo $$ >> " + out_ + "/pids\nsleep 60");
	Dispatcher::Options o = options(3000ms);
	o.maxQueued = 2;
	o.drainTimeout = 200ms;
	Collector sub;
	Dispatcher::Stats s;
	{
		Dispatcher d(o);
		d.subscribe(sub.callback());
		d.emit(event(0));
		ASSERT_TRUE(waitFor([&] { return readLines(out_ + "/pids").size() == 1; }));
		// The first handler hangs: the handler stage holds two more,
		// the other seven are dropped there (the log and the subscriber
		// have their own queues and keep up).
		for (int i = 1; i < 10; i++) {
			d.emit(event(i));
			ASSERT_TRUE(waitFor([&] { return sub.count() == size_t(i + 1); }));
		}
		ASSERT_TRUE(waitFor([&] { return d.stats().logged == 10; }));
		// The log is written before the hand-over to the handler stage,
		// so the last drop may follow the last log line by a moment.
		ASSERT_TRUE(waitFor([&] { return d.stats().dropped >= 7; }));
		s = d.stats();
		EXPECT_EQ(s.dropped, 7u);
		EXPECT_EQ(s.handlerRuns, 0u); // the first still runs
	}
	// The destructor stopped the hung one; the two queued were dropped.
	EXPECT_EQ(readLines(out_ + "/pids").size(), 1u);
	EXPECT_EQ(logLines().size(), 10u);
}

TEST_F(DispatcherTest, NoHandlerDirectoryIsFine)
{
	Dispatcher::Options o = options();
	o.handlerDir = dir_.file("does-not-exist");
	Dispatcher d(o);
	d.emit(event(0));
	d.emit(Json()); // null: ignored
	ASSERT_TRUE(waitFor([&] { return d.stats().logged == 1; }));
	std::this_thread::sleep_for(50ms);
	EXPECT_EQ(d.stats().handlerRuns, 0u);
	EXPECT_EQ(d.stats().logged, 1u);
}

} // namespace
} // namespace virtsnap::events::test
