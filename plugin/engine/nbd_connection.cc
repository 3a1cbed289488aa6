#include "nbd_connection.h"

#include <libnbd.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace virtsnap::engine {

namespace {

// How long a clean disconnect may take before the handle is just closed.
constexpr std::chrono::milliseconds kNbdDisconnectLimit{1000};

} // namespace

Result<std::unique_ptr<NbdConnection>> NbdConnection::create(NbdPeer peer)
{
	std::unique_ptr<NbdConnection> c(new NbdConnection(std::move(peer)));
	c->nbd_ = nbd_create();
	if (!c->nbd_)
		return c->failed("create NBD handle");
	return c;
}

NbdConnection::~NbdConnection()
{
	if (!nbd_)
		return;
	// A clean NBD_CMD_DISC waits for the requests in flight, and for a
	// server that answers: only then, and only for a moment.
	if (!unanswered_ && nbd_aio_is_ready(nbd_) == 1 && nbd_aio_in_flight(nbd_) == 0 &&
	    nbd_aio_disconnect(nbd_, 0) == 0) {
		auto limit = std::chrono::steady_clock::now() + kNbdDisconnectLimit;
		while (nbd_aio_is_closed(nbd_) == 0 && nbd_aio_is_dead(nbd_) == 0) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
				limit - std::chrono::steady_clock::now());
			if (left.count() <= 0 || !pollOnce(-1, int(left.count())))
				break;
		}
	}
	nbd_close(nbd_);
}

std::unexpected<Error> NbdConnection::failed(const std::string &what) const
{
	const char *msg = nbd_get_error();
	return fail(peer_.errorCode, what + ": " + (msg ? msg : "unknown NBD error"));
}

Result<void> NbdConnection::connectUnix(const std::string &socket)
{
	answered();
	if (nbd_aio_connect_unix(nbd_, socket.c_str()) != 0)
		return failed("connect to " + peer_.server);
	nbd_handle *nbd = nbd_;
	VS_TRY(waitFor([nbd] { return nbd_aio_is_connecting(nbd) == 0; }));
	if (nbd_aio_is_ready(nbd_) != 1)
		return failed("connect to " + peer_.server);
	return {};
}

Error NbdConnection::noAnswer() const
{
	// Whole seconds, as [hypervisor] timeout is given and as the monitor's
	// own timeout says it (libvirt_watchdog.cc).
	auto seconds = std::chrono::duration_cast<std::chrono::seconds>(peer_.answerTimeout).count();
	return Error{peer_.errorCode, peer_.server + " answered nothing within " + std::to_string(seconds) +
					      " s ([hypervisor] timeout): is " + peer_.program + " stopped or hung?"};
}

Result<void> NbdConnection::checkAnswered()
{
	if (std::chrono::steady_clock::now() - lastAnswer_ < peer_.answerTimeout)
		return {};
	unanswered_ = true;
	return std::unexpected(noAnswer());
}

Result<void> NbdConnection::waitFor(const std::function<bool()> &finished)
{
	if (!nbd_)
		return std::unexpected(noAnswer());
	answered();
	while (!finished()) {
		auto waited = std::chrono::steady_clock::now() - lastAnswer_;
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(peer_.answerTimeout - waited);
		if (left.count() <= 0) {
			unanswered_ = true;
			return std::unexpected(noAnswer());
		}
		VS_TRY(pollOnce(-1, int(std::min<int64_t>(left.count() + 1, 1000))));
	}
	return {};
}

void NbdConnection::abandon()
{
	if (!nbd_)
		return;
	// libnbd forgets the commands of a closed handle without calling them
	// back, and writes into no buffer after nbd_close.
	nbd_close(nbd_);
	nbd_ = nullptr;
}

Result<void> NbdConnection::pollOnce(int wakeFd, int timeoutMs)
{
	int fd = nbd_aio_get_fd(nbd_);
	if (fd < 0)
		return failed("the connection to " + peer_.server);
	unsigned dir = nbd_aio_get_direction(nbd_);
	struct pollfd fds[2] = {};
	fds[0].fd = fd;
	fds[0].events = short(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
			      ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
	fds[1].fd = wakeFd;
	fds[1].events = POLLIN;
	int r = ::poll(fds, wakeFd >= 0 ? 2 : 1, timeoutMs);
	if (r < 0) {
		// A signal: the caller checks for cancellation and calls again.
		if (errno == EINTR)
			return {};
		return failErrno("poll " + peer_.server, errno);
	}
	if (wakeFd >= 0 && (fds[1].revents & POLLIN)) {
		uint64_t count;
		(void)!::read(wakeFd, &count, sizeof(count));
	}
	// Errors and hang-ups are found by reading: libnbd then fails the
	// requests in flight through their callbacks.
	if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
		if (nbd_aio_notify_read(nbd_) < 0)
			return failed("read from " + peer_.server);
	} else if (fds[0].revents & POLLOUT) {
		if (nbd_aio_notify_write(nbd_) < 0)
			return failed("write to " + peer_.server);
	}
	return {};
}

} // namespace virtsnap::engine
