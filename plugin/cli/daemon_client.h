// The CLI's side of virtsnapd's socket (daemon/PROTOCOL.md).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/arguments.h"
#include "core/unique_fd.h"
#include "json/json.h"

namespace virtsnap::cli {

class DaemonClient
{
public:
	// nullopt when no daemon answers there (absent, or a stale socket);
	// an error when one is there but this user may not talk to it.
	static Result<std::optional<DaemonClient>> connect(const std::string &socketPath);

	// Sends one command; the reply {"ok", "result", "error"}.
	Result<virtsnap::Json> call(const Arguments &args);
	// Streams events (one JSON line each) until the daemon goes away or
	// `line` returns false.
	Result<void> follow(const std::function<bool(const std::string &line)> &line);

private:
	explicit DaemonClient(UniqueFd fd) : fd_(std::move(fd)) {}
	Result<std::string> readLine();

	UniqueFd fd_;
	std::string buffer_;
};

} // namespace virtsnap::cli
