#include "qmp/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace qmp::detail {

namespace {

std::string errnoText(int err)
{
	return std::strerror(err);
}

// poll() takes whole milliseconds; rounding up avoids a busy loop of
// zero-length polls just before the deadline.
int remainingMs(Deadline deadline)
{
	auto left = deadline - Clock::now();
	if (left <= Clock::duration::zero())
		return 0;
	auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
	return ms > 0x7fffffff ? 0x7fffffff : static_cast<int>(ms);
}

// True when `fd` is ready for `events`; Timeout once the deadline passed.
Result<void> waitFor(int fd, short events, Deadline deadline)
{
	for (;;) {
		struct pollfd pfd = {fd, events, 0};
		int n = ::poll(&pfd, 1, remainingMs(deadline));
		if (n > 0)
			return {};
		if (n == 0) {
			if (Clock::now() >= deadline)
				return fail(kTimeout, "timed out");
			continue;
		}
		if (errno != EINTR)
			return fail(kConnectionClosed, "poll failed: " + errnoText(errno));
	}
}

} // namespace

Result<int> connectUnix(const std::string &path)
{
	struct sockaddr_un addr = {};
	addr.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(addr.sun_path))
		return fail(kConnectionFailed, "invalid unix socket path '" + path + "'");
	std::memcpy(addr.sun_path, path.data(), path.size());

	int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail(kConnectionFailed, "cannot create socket for " + path + ": " + errnoText(errno));
	int rc;
	do {
		rc = ::connect(fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr));
	} while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		int err = errno;
		::close(fd);
		return fail(kConnectionFailed, "cannot connect to " + path + ": " + errnoText(err));
	}
	return fd;
}

Result<void> sendAll(int fd, std::string_view data, Deadline deadline, const std::string &peer)
{
	while (!data.empty()) {
		ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0) {
			data.remove_prefix(static_cast<size_t>(n));
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			auto ready = waitFor(fd, POLLOUT, deadline);
			if (!ready)
				return ready;
			continue;
		}
		return fail(kConnectionClosed, "cannot write to " + peer + ": " + errnoText(errno));
	}
	return {};
}

Result<void> receiveSome(int fd, std::string &buffer, Deadline deadline, const std::string &peer)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = ::recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
		if (n > 0) {
			buffer.append(chunk, static_cast<size_t>(n));
			return {};
		}
		if (n == 0)
			return fail(kConnectionClosed, peer + " closed the connection");
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			auto ready = waitFor(fd, POLLIN, deadline);
			if (!ready)
				return ready;
			continue;
		}
		return fail(kConnectionClosed, "cannot read from " + peer + ": " + errnoText(errno));
	}
}

} // namespace qmp::detail
