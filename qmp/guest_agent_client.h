// A qemu-guest-agent client over the host side of the agent's virtio-serial
// channel (a unix socket). The agent has no command ids: commands are
// strictly one at a time, and after any timeout the next call resynchronises
// with guest-sync-delimited, whose reply may be preceded by a 0xFF byte and
// by stale replies that must be discarded.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "error.h"
#include "json/json.h"

namespace virtsnap {
class JsonStream;
}

namespace qmp {

class GuestAgentClient
{
public:
	using Duration = std::chrono::milliseconds;

	// Connects to the socket (ConnectionFailed if absent) and synchronises
	// (Timeout if the agent does not answer in time: a hung or absent agent).
	static Result<std::unique_ptr<GuestAgentClient>> connect(const std::string &socketPath,
								 Duration timeout = Duration(5000));
	~GuestAgentClient();

	// guest-sync-delimited with a fresh random id; discards everything
	// before the matching reply.
	Result<void> sync(Duration timeout);

	// Runs one command, syncing first if an earlier one timed out.
	Result<virtsnap::Json> execute(const std::string &command, virtsnap::Json arguments = virtsnap::Json(),
			     Duration timeout = Duration(10000));

	// Sends one command without waiting for its reply or syncing first,
	// for when waiting is no option: a thaw queued behind a freeze that a
	// hung agent may still run. A 0xFF before it drops whatever half
	// command an earlier timeout left in the agent's parser; the reply is
	// discarded by the resync of the next execute(). Errors: Timeout (could
	// not even send), ConnectionClosed.
	Result<void> post(const std::string &command, virtsnap::Json arguments = virtsnap::Json(),
			  Duration timeout = Duration(1000));

private:
	using Deadline = std::chrono::steady_clock::time_point;

	GuestAgentClient(int fd, std::string socketPath);
	// `what` names the command the sync is for in a Timeout desc.
	Result<void> syncUntil(Deadline deadline, Duration timeout, const std::string &what);
	// Drops 0xFF delimiters and whitespace between replies.
	void skipSeparators();
	// The next complete reply in buffer_, nullopt if more bytes are needed.
	Result<std::optional<virtsnap::Json>> nextReply();

	int fd_;
	std::string socketPath_;
	std::string buffer_;
	std::unique_ptr<virtsnap::JsonStream> stream_;
	bool needSync_ = true;
};

} // namespace qmp
