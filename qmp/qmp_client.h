// A QMP client over a unix socket: greeting, qmp_capabilities, commands with
// per-command timeouts and id matching, and a queue of the events that arrive
// in between. Single-threaded and blocking; one client per connection.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "error.h"
#include "json.h"

namespace qmp {

namespace detail {
class JsonStream;
}

struct Event {
	std::string name;  // "BLOCK_JOB_CANCELLED", ...
	Json data;         // the event's "data" member (null if none)
	Json raw;          // the whole message, timestamp included
};

class QmpClient
{
public:
	using Duration = std::chrono::milliseconds;

	// Connects, reads the greeting and negotiates capabilities. Errors:
	// ConnectionFailed (no socket, refused), Timeout, ProtocolError.
	static Result<std::unique_ptr<QmpClient>> connect(const std::string &socketPath,
							  Duration timeout = Duration(5000));
	~QmpClient();

	// Runs one command and returns its "return" member. A QMP error reply
	// becomes Error{error.class, error.desc}. A reply that arrives after
	// its command timed out is discarded when it shows up.
	Result<Json> execute(const std::string &command, Json arguments = Json(),
			     Duration timeout = Duration(30000));

	// The next queued or arriving event; Timeout if none comes in time.
	Result<Event> nextEvent(Duration timeout);

	// Waits for an event of that name whose data satisfies match (if any).
	// Other events stay queued in order for later callers.
	Result<Event> waitEvent(const std::string &name,
				const std::function<bool(const Json &data)> &match,
				Duration timeout);

	// Events received so far and not yet taken.
	const std::deque<Event> &pendingEvents() const { return events_; }

	// The greeting's QMP.version.qemu {major, minor, micro}.
	Json version() const { return version_; }

private:
	using Deadline = std::chrono::steady_clock::time_point;

	QmpClient(int fd, std::string socketPath);
	Result<Json> readMessage(Deadline deadline);
	Result<Json> executeUntil(const std::string &command, const Json &arguments,
				  Deadline deadline, Duration timeout);
	// Queues `message` if it is an event; returns whether it was one.
	bool queueEvent(const Json &message);
	// Records a fatal error: later calls fail with it at once.
	std::unexpected<Error> die(Error error);

	int fd_;
	std::string socketPath_;
	std::string buffer_;
	std::unique_ptr<detail::JsonStream> stream_;
	std::optional<Error> dead_;
	std::deque<Event> events_;
	Json version_;
	uint64_t nextId_ = 1;
};

} // namespace qmp
