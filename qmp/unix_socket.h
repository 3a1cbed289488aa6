// Private to the protocol library: a non-blocking unix stream socket driven
// with poll() against absolute deadlines, so one timeout can span many
// reads and writes.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "qmp/error.h"

namespace qmp::detail {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

// A connected, non-blocking, close-on-exec socket; ConnectionFailed naming
// `path` otherwise.
Result<int> connectUnix(const std::string &path);

// Errors are ConnectionClosed (desc names `peer`) or Timeout (generic desc
// the caller is expected to replace with one naming what it waited for).
Result<void> sendAll(int fd, std::string_view data, Deadline deadline, const std::string &peer);

// Appends at least one byte to `buffer`.
Result<void> receiveSome(int fd, std::string &buffer, Deadline deadline, const std::string &peer);

} // namespace qmp::detail
