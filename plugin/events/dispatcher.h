// Delivers virtsnapd's events (JSON objects, see event.h) to three kinds of
// consumer, none of which can hold up a snapshot or each other:
//
//   - the event log: one compact JSON line per event, appended (O_APPEND,
//     created 0640 with its directory 0750 if absent, fdatasync per event).
//     When the path stops naming the open file (logrotate moved it) the
//     file is opened again. Write errors are counted, reported on stderr
//     when the log breaks and when it recovers, never passed to emit().
//   - handlers: every executable in handlerDir (see handler.h for which),
//     in name order, once per event, with the event as one line on stdin.
//     Their stdout and stderr are copied to our stderr line by line after
//     "virtsnap events: handler NAME: ". Each gets handlerTimeout, then
//     SIGTERM to its process group, then SIGKILL a second later; it is
//     always reaped. Handlers run one at a time on their own thread, so a
//     hung one delays only later handler runs, never the log or
//     subscribers. The directory is read again for each event, so handlers
//     can be added or removed while the daemon runs. A handler inherits the
//     daemon's environment and working directory, nothing else: all other
//     file descriptors are closed, signal dispositions are the defaults.
//   - subscribers (`virtsnap events --follow` clients): each has its own
//     thread and its own queue of maxQueued lines; when it falls behind,
//     the oldest line it has not seen is dropped (counted in `dropped`).
//     So a slow subscriber loses events; it never blocks the others.
//
// Each stage has a bounded queue (maxQueued events): when the log stage or
// the handler stage is that far behind, new events are dropped there and
// counted in `dropped`, never buffered without bound.
//
// What the daemon must not do: set SIGCHLD to SIG_IGN (handlers could not
// be waited for), or reap arbitrary children (waitpid(-1)).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "json/json.h"

namespace virtsnap::events {

class Dispatcher
{
public:
	struct Options {
		std::filesystem::path logFile;    // empty: no log
		std::filesystem::path handlerDir; // empty or absent: no handlers
		std::chrono::milliseconds handlerTimeout{10000};
		size_t maxQueued = 1000;          // per stage and per subscriber; 0 means 1
		// How long the destructor keeps delivering what is queued.
		std::chrono::milliseconds drainTimeout{1000};
	};

	// Starts the delivery threads; throws std::system_error only when the
	// system cannot create a thread (as std::thread does).
	explicit Dispatcher(Options options);
	// Delivers what is queued for at most drainTimeout, then stops: a
	// handler still running gets SIGTERM, SIGKILL a second later, and is
	// reaped; events not delivered by then are counted as dropped. So it
	// returns within about drainTimeout + 1 s, provided subscriber
	// callbacks return.
	~Dispatcher();
	Dispatcher(const Dispatcher &) = delete;
	Dispatcher &operator=(const Dispatcher &) = delete;

	// Queues the event and returns at once (a short lock, no I/O). Never
	// throws and never fails the caller: an event that cannot be queued is
	// counted as dropped. A null Json is ignored.
	void emit(const virtsnap::Json &event) noexcept;

	// `deliver` gets each later event as one compact JSON line (no newline),
	// in order, on a thread of this subscriber's own, never two calls at
	// once. Returning false (or throwing) unsubscribes it. It should return
	// in bounded time (e.g. a socket with a send timeout, MSG_NOSIGNAL):
	// unsubscribe() and the destructor wait for a call in progress. Returns
	// the subscription id; 0 when no thread could be started or the
	// dispatcher is being destroyed.
	uint64_t subscribe(std::function<bool(const std::string &line)> deliver);
	// After it returns, `deliver` is not running and is never called again
	// (when called from inside `deliver` itself, from its return on).
	// Unknown or finished ids are ignored.
	void unsubscribe(uint64_t id);

	struct Stats {
		uint64_t logged = 0;          // lines appended to the log
		uint64_t handlerRuns = 0;     // handler executions (started or not)
		uint64_t handlerFailures = 0; // non-zero exit, signal, or could not start
		uint64_t handlerTimeouts = 0; // killed after handlerTimeout (or at shutdown)
		uint64_t dropped = 0;         // deliveries lost to a full queue or to shutdown
		uint64_t logFailures = 0;     // events the log could not take
	};
	Stats stats() const;

private:
	struct Impl;
	std::unique_ptr<Impl> impl_;
};

} // namespace virtsnap::events
