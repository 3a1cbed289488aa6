#include "nbd_reader.h"

#include <libnbd.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

namespace virtsnap::engine {

namespace {

std::unexpected<Error> nbdFail(const std::string &what)
{
	const char *msg = nbd_get_error();
	return fail(errc::kHypervisor, what + ": " + (msg ? msg : "unknown NBD error"));
}

// How long a clean disconnect may take before the handle is just closed.
constexpr std::chrono::milliseconds kDisconnectLimit{1000};

} // namespace

// One synchronous-looking request (block status) made asynchronously: what
// its callbacks share with the waiter. Each callback holds a reference, so a
// request the waiter gave up on never touches freed memory; `abandoned`
// keeps a late answer from reaching the waiter's visitor.
struct NbdReader::Call {
	const std::string *context = nullptr;
	const std::function<void(uint64_t, uint64_t, uint32_t)> *visit = nullptr;
	uint64_t end = 0; // how far the server has described
	bool done = false;
	int error = 0;
	bool abandoned = false;

	using Ref = std::shared_ptr<Call>;
	static void *hold(const Ref &call) { return new Ref(call); }
	static Call &of(void *user) { return **static_cast<Ref *>(user); }
	static void release(void *user) { delete static_cast<Ref *>(user); }

	static int onExtents(void *user, const char *metacontext, uint64_t offset, uint32_t *entries, size_t count,
			     int *)
	{
		Call &c = of(user);
		if (c.abandoned || *c.context != metacontext)
			return 0;
		for (size_t i = 0; i + 1 < count; i += 2) {
			(*c.visit)(offset, entries[i], entries[i + 1]);
			offset += entries[i];
		}
		c.end = offset;
		return 0;
	}
	static int onDone(void *user, int *error)
	{
		Call &c = of(user);
		c.done = true;
		c.error = *error;
		return 1;
	}
};

// One asynchronous read: what its completion needs. libnbd owns it from
// nbd_aio_pread on and frees it through freePending, also when the call
// fails or the handle closes first.
struct NbdReader::Pending {
	NbdReader *reader;
	uint64_t offset;
	size_t length;
	Done done;
	bool completed = false;
};

int NbdReader::onReadDone(void *user, int *error)
{
	auto *p = static_cast<Pending *>(user);
	p->completed = true;
	p->reader->inFlight_--;
	p->reader->lastAnswer_ = std::chrono::steady_clock::now();
	if (*error != 0)
		p->done(fail(errc::kHypervisor, "read " + p->reader->name_ + " at " + std::to_string(p->offset) +
							" (" + std::to_string(p->length) + " bytes): " + std::strerror(*error)));
	else
		p->done({});
	// 1: the command is retired here; nobody asks for it by cookie.
	return 1;
}

void NbdReader::freePending(void *user)
{
	delete static_cast<Pending *>(user);
}

Result<std::unique_ptr<NbdReader>> NbdReader::open(const hypervisor::DiskExport &exp,
						    const std::vector<std::string> &contexts)
{
	std::unique_ptr<NbdReader> r(new NbdReader());
	r->name_ = exp.diskId;
	r->answerTimeout_ = exp.answerTimeout;
	r->nbd_ = nbd_create();
	if (!r->nbd_)
		return nbdFail("create NBD handle");
	for (const std::string &c : contexts)
		if (nbd_add_meta_context(r->nbd_, c.c_str()) != 0)
			return nbdFail("request " + c);
	// libnbd zeroes every read buffer first, against applications that
	// use a buffer whose read failed. Ours never do (a failed read fails
	// the copy and its buffer is not looked at), and the zeroing is a
	// memset of the whole disk.
	if (nbd_set_pread_initialize(r->nbd_, false) != 0)
		return nbdFail("configure the NBD handle");
	if (nbd_set_export_name(r->nbd_, exp.exportName.c_str()) != 0)
		return nbdFail("set export name");
	r->lastAnswer_ = std::chrono::steady_clock::now();
	if (nbd_aio_connect_unix(r->nbd_, exp.nbdSocket.c_str()) != 0)
		return nbdFail("connect to the export of " + exp.diskId);
	nbd_handle *nbd = r->nbd_;
	VS_TRY(r->waitFor([nbd] { return nbd_aio_is_connecting(nbd) == 0; }));
	if (nbd_aio_is_ready(r->nbd_) != 1)
		return nbdFail("connect to the export of " + exp.diskId);
	for (const std::string &c : contexts)
		if (nbd_can_meta_context(r->nbd_, c.c_str()) != 1)
			return fail(errc::kHypervisor, "the export of " + exp.diskId + " does not offer " + c);
	int64_t size = nbd_get_size(r->nbd_);
	if (size < 0)
		return nbdFail("size of the export of " + exp.diskId);
	r->size_ = uint64_t(size);
	return r;
}

NbdReader::~NbdReader()
{
	if (!nbd_)
		return;
	// A clean NBD_CMD_DISC waits for the reads in flight, and for an
	// export that answers: only then, and only for a moment.
	if (inFlight_ == 0 && !unanswered_ && nbd_aio_disconnect(nbd_, 0) == 0) {
		auto limit = std::chrono::steady_clock::now() + kDisconnectLimit;
		while (nbd_aio_is_closed(nbd_) == 0 && nbd_aio_is_dead(nbd_) == 0) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
				limit - std::chrono::steady_clock::now());
			if (left.count() <= 0 || !pollOnce(-1, int(left.count())))
				break;
		}
	}
	nbd_close(nbd_);
}

Error NbdReader::noAnswer() const
{
	// Whole seconds, as [hypervisor] timeout is given and as the monitor's
	// own timeout says it (libvirt_watchdog.cc).
	auto seconds = std::chrono::duration_cast<std::chrono::seconds>(answerTimeout_).count();
	return Error{errc::kHypervisor, "QEMU's export of " + name_ + " answered nothing within " +
						std::to_string(seconds) + " s ([hypervisor] timeout): is QEMU stopped or hung?"};
}

Result<void> NbdReader::waitFor(const std::function<bool()> &finished)
{
	lastAnswer_ = std::chrono::steady_clock::now();
	while (!finished()) {
		auto waited = std::chrono::steady_clock::now() - lastAnswer_;
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(answerTimeout_ - waited);
		if (left.count() <= 0) {
			unanswered_ = true;
			return std::unexpected(noAnswer());
		}
		VS_TRY(pollOnce(-1, int(std::min<int64_t>(left.count() + 1, 1000))));
	}
	return {};
}

Result<void> NbdReader::extents(const std::string &context,
				const std::function<void(uint64_t, uint64_t, uint32_t)> &visit)
{
	// Queries go in windows: the protocol's lengths are 32-bit.
	constexpr uint64_t kWindow = 1ull << 30;
	uint64_t offset = 0;
	while (offset < size_) {
		uint64_t want = std::min(kWindow, size_ - offset);
		auto call = std::make_shared<Call>();
		call->context = &context;
		call->visit = &visit;
		call->end = offset;
		nbd_extent_callback extents{Call::onExtents, Call::hold(call), Call::release};
		nbd_completion_callback done{Call::onDone, Call::hold(call), Call::release};
		if (nbd_aio_block_status(nbd_, want, offset, extents, done, 0) < 0)
			return nbdFail("block status of " + name_);
		if (auto waited = waitFor([&call] { return call->done; }); !waited) {
			call->abandoned = true;
			return waited;
		}
		if (call->error != 0)
			return fail(errc::kHypervisor, "block status of " + name_ + ": " + std::strerror(call->error));
		if (call->end <= offset)
			return fail(errc::kHypervisor, "the export of " + name_ + " described no extent at " +
							       std::to_string(offset));
		offset = std::min(call->end, size_);
	}
	return {};
}

Result<void> NbdReader::startRead(std::span<uint8_t> out, uint64_t offset, Done done)
{
	if (!nbd_)
		return std::unexpected(noAnswer());
	auto *p = new Pending{this, offset, out.size(), std::move(done)};
	nbd_completion_callback cb{onReadDone, p, freePending};
	// The timeout counts from the first read of a quiet connection, not
	// from its last answer long ago.
	if (inFlight_ == 0)
		lastAnswer_ = std::chrono::steady_clock::now();
	// Counted before the call: a read the server answers at once may
	// complete inside it.
	inFlight_++;
	if (nbd_aio_pread(nbd_, out.data(), out.size(), offset, cb, 0) < 0) {
		inFlight_--;
		// freePending has run already (libnbd frees on failure too).
		return nbdFail("read " + name_ + " at " + std::to_string(offset));
	}
	return {};
}

Result<void> NbdReader::poll(int wakeFd, int timeoutMs)
{
	if (!nbd_)
		return std::unexpected(noAnswer());
	VS_TRY(pollOnce(wakeFd, timeoutMs));
	if (inFlight_ > 0 && std::chrono::steady_clock::now() - lastAnswer_ >= answerTimeout_) {
		unanswered_ = true;
		return std::unexpected(noAnswer());
	}
	return {};
}

void NbdReader::abandon()
{
	if (!nbd_)
		return;
	// libnbd forgets the commands of a closed handle without calling them
	// back, and writes into no buffer after nbd_close.
	nbd_close(nbd_);
	nbd_ = nullptr;
	inFlight_ = 0;
}

Result<void> NbdReader::pollOnce(int wakeFd, int timeoutMs)
{
	int fd = nbd_aio_get_fd(nbd_);
	if (fd < 0)
		return nbdFail("the connection to the export of " + name_);
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
		return failErrno("poll the export of " + name_, errno);
	}
	if (wakeFd >= 0 && (fds[1].revents & POLLIN)) {
		uint64_t count;
		(void)!::read(wakeFd, &count, sizeof(count));
	}
	// Errors and hang-ups are found by reading: libnbd then fails the
	// reads in flight through their callbacks.
	if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
		if (nbd_aio_notify_read(nbd_) < 0)
			return nbdFail("read from the export of " + name_);
	} else if (fds[0].revents & POLLOUT) {
		if (nbd_aio_notify_write(nbd_) < 0)
			return nbdFail("write to the export of " + name_);
	}
	return {};
}

} // namespace virtsnap::engine
