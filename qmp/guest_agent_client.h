// A qemu-guest-agent client over the host side of the agent's virtio-serial
// channel (a unix socket). The agent has no command ids: commands are
// strictly one at a time, and after any timeout the next call resynchronises
// with guest-sync-delimited, whose reply may be preceded by a 0xFF byte and
// by stale replies that must be discarded.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "error.h"
#include "json.h"

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
	Result<Json> execute(const std::string &command, Json arguments = Json(),
			     Duration timeout = Duration(10000));

private:
	explicit GuestAgentClient(int fd);

	int fd_;
	std::string buffer_;
	bool needSync_ = true;
};

} // namespace qmp
