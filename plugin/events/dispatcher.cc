#include "events/dispatcher.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "core/file_util.h"
#include "core/unique_fd.h"
#include "events/handler.h"

namespace virtsnap::events {

namespace {

using Line = std::shared_ptr<const std::string>;

void warn(const std::string &message)
{
	std::string line = "virtsnap events: " + message + "\n";
	// Best effort: there is nowhere else to report a failing stderr.
	[[maybe_unused]] auto r = writeAll(2, std::span(reinterpret_cast<const uint8_t *>(line.data()), line.size()));
}

} // namespace

struct Dispatcher::Impl {
	// One subscriber: its queue, and the thread that empties it into
	// `deliver`. Owned by `subscribers` (or `retired`) until joined.
	struct Subscriber {
		enum class State { Running, Draining, Stopped };
		std::function<bool(const std::string &)> deliver;
		std::mutex mutex;
		std::condition_variable cv;
		std::deque<Line> queue;
		State state = State::Running;
		std::atomic<bool> finished{false}; // its thread is leaving
		std::thread thread;
	};

	explicit Impl(Options o) : options(std::move(o)), cap(std::max<size_t>(options.maxQueued, 1))
	{
		wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	}

	Options options;
	const size_t cap;

	// The two stage queues and the shutdown state.
	std::mutex mutex;
	std::condition_variable deliveryCv, handlerCv;
	std::deque<Line> pending, handlerPending;
	bool stopping = false, deliveryDone = false;
	// When shutdown delivery ends (steady clock); max() until then.
	std::atomic<Clock::rep> cutoff{Clock::time_point::max().time_since_epoch().count()};
	// Readable once shutdown begins: wakes the handler thread out of poll().
	UniqueFd wake;

	std::mutex subsMutex;
	std::map<uint64_t, std::shared_ptr<Subscriber>> subscribers;
	// Unsubscribed from inside their own callback, so not joinable there.
	std::vector<std::shared_ptr<Subscriber>> retired;
	uint64_t nextId = 1;
	bool closed = false; // the destructor has taken the subscribers

	// Delivery thread only.
	UniqueFd logFd;
	bool logBroken = false;
	bool warnedHandlerDir = false;
	std::atomic<bool> warnedDrop{false};

	std::atomic<uint64_t> logged{0}, handlerRuns{0}, handlerFailures{0}, handlerTimeouts{0}, dropped{0},
		logFailures{0};

	std::thread deliveryThread, handlerThread;

	Clock::time_point cutoffTime() const { return Clock::time_point(Clock::duration(cutoff.load())); }
	bool pastCutoff() const { return Clock::now() >= cutoffTime(); }

	void countDropped(uint64_t n, const char *where)
	{
		if (n == 0)
			return;
		dropped += n;
		if (!warnedDrop.exchange(true))
			warn(std::string("dropping events (") + where +
			     "); later drops are only counted (stats: dropped)");
	}

	// -- The log.

	Result<void> appendLog(const std::string &line)
	{
		const std::filesystem::path &path = options.logFile;
		if (logFd.isValid()) {
			struct stat atPath, open;
			if (::stat(path.c_str(), &atPath) != 0 || ::fstat(logFd.get(), &open) != 0 ||
			    atPath.st_dev != open.st_dev || atPath.st_ino != open.st_ino)
				logFd.reset(); // rotated or removed: start a new file
		}
		if (!logFd.isValid()) {
			VS_TRY(makeDirs(path.parent_path(), 0750));
			logFd.reset(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
			if (!logFd.isValid())
				return failErrno("open " + path.string(), errno);
		}
		struct stat before;
		if (::fstat(logFd.get(), &before) != 0)
			return failErrno("stat " + path.string(), errno);
		std::string record = line + "\n";
		auto written = writeAll(logFd.get(), std::span(reinterpret_cast<const uint8_t *>(record.data()),
							       record.size()));
		if (!written) {
			// A half line would glue itself to the next event's line.
			[[maybe_unused]] int rc = ::ftruncate(logFd.get(), before.st_size);
			return std::unexpected(written.error());
		}
		if (::fdatasync(logFd.get()) != 0)
			return failErrno("fdatasync " + path.string(), errno);
		return {};
	}

	void writeLog(const std::string &line)
	{
		if (options.logFile.empty())
			return;
		auto r = appendLog(line);
		if (r) {
			logged++;
			if (logBroken)
				warn("event log " + options.logFile.string() + " is writable again");
			logBroken = false;
			return;
		}
		logFailures++;
		if (!logBroken)
			warn("cannot write event log (events are lost until it works again): " + r.error().toString());
		logBroken = true;
		logFd.reset();
	}

	// -- Subscribers.

	void subscriberLoop(Subscriber *s)
	{
		for (;;) {
			Line line;
			{
				std::unique_lock lock(s->mutex);
				s->cv.wait(lock, [&] { return s->state != Subscriber::State::Running || !s->queue.empty(); });
				if (s->state == Subscriber::State::Stopped || s->queue.empty())
					break;
				if (s->state == Subscriber::State::Draining && pastCutoff()) {
					countDropped(s->queue.size(), "subscriber at shutdown");
					s->queue.clear();
					break;
				}
				line = std::move(s->queue.front());
				s->queue.pop_front();
			}
			bool keep = false;
			try {
				keep = s->deliver(*line);
			} catch (...) {
				keep = false;
			}
			if (!keep)
				break;
		}
		s->finished = true;
	}

	void fanOut(const Line &line)
	{
		std::vector<std::shared_ptr<Subscriber>> done;
		{
			std::lock_guard lock(subsMutex);
			for (auto it = subscribers.begin(); it != subscribers.end();) {
				Subscriber &s = *it->second;
				if (s.finished) {
					done.push_back(std::move(it->second));
					it = subscribers.erase(it);
					continue;
				}
				{
					std::lock_guard subLock(s.mutex);
					// Drop-oldest: a follower that falls behind
					// sees the newest events, not stale ones.
					if (s.queue.size() >= cap) {
						s.queue.pop_front();
						countDropped(1, "a subscriber is too slow");
					}
					s.queue.push_back(line);
				}
				s.cv.notify_one();
				++it;
			}
			for (auto it = retired.begin(); it != retired.end();) {
				if ((*it)->finished) {
					done.push_back(std::move(*it));
					it = retired.erase(it);
				} else {
					++it;
				}
			}
		}
		// Their threads have left the loop: these joins are immediate.
		for (auto &s : done)
			if (s->thread.joinable())
				s->thread.join();
	}

	// -- The delivery thread: log, subscribers, hand-over to handlers.

	void deliveryLoop()
	{
		for (;;) {
			Line line;
			{
				std::unique_lock lock(mutex);
				deliveryCv.wait(lock, [&] { return stopping || !pending.empty(); });
				if (pending.empty())
					break;
				if (stopping && pastCutoff()) {
					countDropped(pending.size(), "shutdown");
					pending.clear();
					break;
				}
				line = std::move(pending.front());
				pending.pop_front();
			}
			writeLog(*line);
			fanOut(line);
			if (!options.handlerDir.empty()) {
				std::unique_lock lock(mutex);
				if (handlerPending.size() >= cap) {
					lock.unlock();
					countDropped(1, "handlers are too slow");
				} else {
					handlerPending.push_back(line);
					lock.unlock();
					handlerCv.notify_one();
				}
			}
		}
		{
			std::lock_guard lock(mutex);
			deliveryDone = true;
		}
		handlerCv.notify_all();
	}

	// -- The handler thread.

	void handlerLoop()
	{
		// A handler that closes stdin early makes our write fail with
		// EPIPE; blocked, the SIGPIPE that comes with it cannot kill the
		// daemon (runHandler consumes it). Only this thread blocks it.
		sigset_t pipeSet;
		sigemptyset(&pipeSet);
		sigaddset(&pipeSet, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &pipeSet, nullptr);

		for (;;) {
			Line line;
			{
				std::unique_lock lock(mutex);
				handlerCv.wait(lock, [&] { return !handlerPending.empty() || deliveryDone; });
				if (handlerPending.empty())
					break;
				if (stopping && pastCutoff()) {
					countDropped(handlerPending.size(), "handlers at shutdown");
					handlerPending.clear();
					continue; // the delivery thread may still add some
				}
				line = std::move(handlerPending.front());
				handlerPending.pop_front();
			}
			runHandlers(*line + "\n");
		}
	}

	void runHandlers(const std::string &input)
	{
		auto handlers = listHandlers(options.handlerDir);
		if (!handlers) {
			if (!warnedHandlerDir)
				warn(handlers.error().toString());
			warnedHandlerDir = true;
			return;
		}
		warnedHandlerDir = false;
		for (const fs::path &program : *handlers) {
			if (pastCutoff())
				return;
			std::string name = program.filename().string();
			HandlerLimits limits;
			limits.timeout = options.handlerTimeout;
			limits.cutoff = [this] { return cutoffTime(); };
			limits.wakeFd = wake.get();
			limits.outputPrefix = "virtsnap events: handler " + name + ": ";
			HandlerRun run = runHandler(program, input, limits);
			handlerRuns++;
			switch (run.outcome) {
			case HandlerRun::Outcome::Succeeded:
				break;
			case HandlerRun::Outcome::TimedOut:
				handlerTimeouts++;
				warn("handler " + program.string() + ": " + run.message);
				break;
			case HandlerRun::Outcome::Failed:
			case HandlerRun::Outcome::NotStarted:
				handlerFailures++;
				warn("handler " + program.string() + " failed: " + run.message);
				break;
			}
		}
	}

	void stopSubscriber(Subscriber &s, Subscriber::State state)
	{
		{
			std::lock_guard lock(s.mutex);
			if (s.state == Subscriber::State::Stopped)
				return; // unsubscribed: never back to draining
			s.state = state;
			if (state == Subscriber::State::Stopped)
				s.queue.clear();
		}
		s.cv.notify_all();
	}
};

Dispatcher::Dispatcher(Options options) : impl_(std::make_unique<Impl>(std::move(options)))
{
	Impl *impl = impl_.get();
	impl->deliveryThread = std::thread([impl] { impl->deliveryLoop(); });
	try {
		impl->handlerThread = std::thread([impl] { impl->handlerLoop(); });
	} catch (...) {
		{
			std::lock_guard lock(impl->mutex);
			impl->stopping = true;
		}
		impl->deliveryCv.notify_all();
		impl->deliveryThread.join();
		throw;
	}
}

Dispatcher::~Dispatcher()
{
	Impl &d = *impl_;
	{
		std::lock_guard lock(d.mutex);
		d.stopping = true;
		d.cutoff = (Clock::now() + d.options.drainTimeout).time_since_epoch().count();
	}
	if (d.wake.isValid()) {
		uint64_t one = 1;
		[[maybe_unused]] ssize_t n = ::write(d.wake.get(), &one, sizeof(one));
	}
	d.deliveryCv.notify_all();
	d.handlerCv.notify_all();
	d.deliveryThread.join();

	// Nothing adds to subscriber queues any more: let them drain (until
	// the cutoff) while the handler thread finishes.
	std::vector<std::shared_ptr<Impl::Subscriber>> subs;
	{
		std::lock_guard lock(d.subsMutex);
		d.closed = true;
		for (auto &[id, s] : d.subscribers)
			subs.push_back(std::move(s));
		d.subscribers.clear();
		for (auto &s : d.retired)
			subs.push_back(std::move(s));
		d.retired.clear();
	}
	for (auto &s : subs)
		d.stopSubscriber(*s, Impl::Subscriber::State::Draining);

	d.handlerThread.join();
	for (auto &s : subs)
		if (s->thread.joinable())
			s->thread.join();
}

void Dispatcher::emit(const virtsnap::Json &event) noexcept
{
	Impl &d = *impl_;
	try {
		if (event.isNull())
			return;
		// Serialized here, in the caller's thread: json-c objects are not
		// safe to share between threads, a string is.
		auto line = std::make_shared<const std::string>(event.dump());
		{
			std::lock_guard lock(d.mutex);
			if (!d.stopping && d.pending.size() < d.cap) {
				d.pending.push_back(std::move(line));
				line.reset();
			}
		}
		if (line)
			d.countDropped(1, "the event log is too slow");
		else
			d.deliveryCv.notify_one();
	} catch (...) {
		d.dropped++; // out of memory: losing the event beats failing a snapshot
	}
}

uint64_t Dispatcher::subscribe(std::function<bool(const std::string &line)> deliver)
{
	if (!deliver)
		return 0;
	Impl &d = *impl_;
	try {
		auto s = std::make_shared<Impl::Subscriber>();
		s->deliver = std::move(deliver);
		std::lock_guard lock(d.subsMutex);
		if (d.closed)
			return 0; // from a callback during shutdown: nobody would join it
		uint64_t id = d.nextId++;
		// In the map before its thread starts: nothing may throw between
		// starting a thread and owning it (a joinable std::thread
		// destroyed is std::terminate).
		auto it = d.subscribers.emplace(id, s).first;
		Impl::Subscriber *raw = s.get();
		try {
			s->thread = std::thread([&d, raw] { d.subscriberLoop(raw); });
		} catch (...) {
			d.subscribers.erase(it);
			return 0;
		}
		return id;
	} catch (...) {
		return 0;
	}
}

void Dispatcher::unsubscribe(uint64_t id)
{
	Impl &d = *impl_;
	std::shared_ptr<Impl::Subscriber> s;
	{
		std::lock_guard lock(d.subsMutex);
		auto it = d.subscribers.find(id);
		if (it == d.subscribers.end())
			return;
		s = std::move(it->second);
		d.subscribers.erase(it);
	}
	d.stopSubscriber(*s, Impl::Subscriber::State::Stopped);
	if (s->thread.get_id() == std::this_thread::get_id()) {
		// From inside its own callback: it stops when the callback
		// returns; the delivery thread or the destructor joins it.
		std::lock_guard lock(d.subsMutex);
		d.retired.push_back(std::move(s));
		return;
	}
	if (s->thread.joinable())
		s->thread.join();
}

Dispatcher::Stats Dispatcher::stats() const
{
	const Impl &d = *impl_;
	return Stats{d.logged.load(), d.handlerRuns.load(), d.handlerFailures.load(), d.handlerTimeouts.load(),
		     d.dropped.load(), d.logFailures.load()};
}

} // namespace virtsnap::events
