// One libnbd connection driven only through the asynchronous API, so that
// no request, the handshake included, waits longer than its answer timeout:
// a stopped or hung server (QEMU's export, a qemu-nbd of ours) fails the
// operation in one line instead of holding it forever. NbdReader reads
// through it, Qcow2ImageWriter writes through it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "core/error.h"

struct nbd_handle;

namespace virtsnap::engine {

// Who answers on a connection, for its errors.
struct NbdPeer {
	std::string server;   // "QEMU's export of vda": what answered nothing
	std::string program;  // "QEMU": what may be stopped or hung
	const char *errorCode = errc::kHypervisor;
	std::chrono::milliseconds answerTimeout{0};
};

class NbdConnection
{
public:
	// A handle to configure (handle()) before connect().
	static Result<std::unique_ptr<NbdConnection>> create(NbdPeer peer);
	// A clean disconnect when nothing is outstanding and the server
	// answers, for a moment at most; then the handle is closed.
	~NbdConnection();
	NbdConnection(const NbdConnection &) = delete;
	NbdConnection &operator=(const NbdConnection &) = delete;

	// Null once abandoned.
	nbd_handle *handle() const { return nbd_; }
	const NbdPeer &peer() const { return peer_; }

	// Connects to `socket` and completes the handshake.
	Result<void> connectUnix(const std::string &socket);
	// Drives the connection until `finished()`, or fails with noAnswer()
	// when the server has answered nothing for the answer timeout.
	Result<void> waitFor(const std::function<bool()> &finished);
	// Polls the connection (and `wakeFd`, -1: none) for at most
	// `timeoutMs` and lets libnbd act on what came.
	Result<void> pollOnce(int wakeFd, int timeoutMs);
	// The server answered: the timeout counts from now.
	void answered() { lastAnswer_ = std::chrono::steady_clock::now(); }
	// Fails with noAnswer() when the last answer is the answer timeout
	// ago; the connection is then given up on.
	Result<void> checkAnswered();
	// The error every request gets once the server has answered nothing
	// for the answer timeout.
	Error noAnswer() const;
	// Closes the handle at once: requests in flight are forgotten without
	// their callbacks, no buffer is written after this returns.
	void abandon();
	// libnbd's last error after `what`, in the peer's error code.
	std::unexpected<Error> failed(const std::string &what) const;

private:
	explicit NbdConnection(NbdPeer peer) : peer_(std::move(peer)) {}

	NbdPeer peer_;
	nbd_handle *nbd_ = nullptr;
	// When the server last answered, or was last asked with nothing
	// outstanding: the start of the wait the timeout bounds.
	std::chrono::steady_clock::time_point lastAnswer_;
	// Set once the server missed its timeout: its requests may never
	// finish, so the handle is only closed, never shut down cleanly.
	bool unanswered_ = false;
};

} // namespace virtsnap::engine
