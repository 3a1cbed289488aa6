// A raw connection to virtsnapd's socket, for tests that speak its line
// protocol (plugin/daemon/PROTOCOL.md) themselves, and a look at a
// process's /proc/PID/status.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

namespace virtsnap::test {

// One connection, closed with the object.
class DaemonConnection
{
public:
	explicit DaemonConnection(const std::string &socket);
	~DaemonConnection();
	DaemonConnection(const DaemonConnection &) = delete;
	DaemonConnection &operator=(const DaemonConnection &) = delete;

	// -1 when the connection failed (errno says why).
	int fd() const { return fd_; }
	bool send(const std::string &data) const;
	// The next reply line, or "" when the daemon closed or said nothing
	// whole within `limit`.
	std::string readLine(std::chrono::milliseconds limit = std::chrono::seconds(10));
	// Whether the daemon closed its end within `limit`.
	bool closedWithin(std::chrono::milliseconds limit) const;

private:
	int fd_;
	std::string buffer_;
};

// A field of /proc/PID/status ("VmHWM", "VmRSS", "Threads") as a number (kB
// for sizes); -1 if absent.
long procStatusField(pid_t pid, const std::string &field);

} // namespace virtsnap::test
