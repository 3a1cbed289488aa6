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
#include "json/json.h"

namespace virtsnap {
class JsonStream;
}

namespace qmp {

struct Event {
	std::string name;  // "BLOCK_JOB_CANCELLED", ...
	virtsnap::Json data;         // the event's "data" member (null if none)
	virtsnap::Json raw;          // the whole message, timestamp included
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
	// its command timed out is discarded when it shows up. Without a
	// timeout, the client's command timeout applies.
	Result<virtsnap::Json> execute(const std::string &command, virtsnap::Json arguments = virtsnap::Json(),
			     std::optional<Duration> timeout = std::nullopt);
	// How long execute() waits by default: 30 s unless set.
	void setCommandTimeout(Duration timeout) { commandTimeout_ = timeout; }
	Duration commandTimeout() const { return commandTimeout_; }

	// The next queued or arriving event; Timeout if none comes in time.
	Result<Event> nextEvent(Duration timeout);

	// Waits for an event of that name whose data satisfies match (if any).
	// Other events stay queued in order for later callers.
	Result<Event> waitEvent(const std::string &name,
				const std::function<bool(const virtsnap::Json &data)> &match,
				Duration timeout);

	// Events received so far and not yet taken.
	const std::deque<Event> &pendingEvents() const { return events_; }

	// The greeting's QMP.version.qemu {major, minor, micro}.
	virtsnap::Json version() const { return version_; }

private:
	using Deadline = std::chrono::steady_clock::time_point;

	QmpClient(int fd, std::string socketPath);
	Result<virtsnap::Json> readMessage(Deadline deadline);
	Result<virtsnap::Json> executeUntil(const std::string &command, const virtsnap::Json &arguments,
				  Deadline deadline, Duration timeout);
	// Queues `message` if it is an event; returns whether it was one.
	bool queueEvent(const virtsnap::Json &message);
	// Records a fatal error: later calls fail with it at once.
	std::unexpected<Error> die(Error error);

	int fd_;
	std::string socketPath_;
	std::string buffer_;
	std::unique_ptr<virtsnap::JsonStream> stream_;
	std::optional<Error> dead_;
	std::deque<Event> events_;
	virtsnap::Json version_;
	uint64_t nextId_ = 1;
	Duration commandTimeout_{30000};
};

} // namespace qmp
