#include "nbd_reader.h"

#include <libnbd.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>

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

// One block-status request over the window [from, to): what its callbacks
// share with the walk that made it. Its extents are kept until the walk
// visits them, after those of every earlier window. Each callback holds a
// reference, so a request the walk gave up on never touches freed memory;
// `abandoned` keeps a late answer from being kept.
struct NbdReader::Call {
	struct Extent {
		uint64_t offset;
		uint64_t length;
		uint32_t flags;
	};
	std::string context;
	uint64_t from = 0;
	uint64_t to = 0;
	uint64_t described = 0; // how far the server has described
	std::vector<Extent> extents;
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
		if (c.abandoned || c.context != metacontext)
			return 0;
		for (size_t i = 0; i + 1 < count; i += 2) {
			c.extents.push_back({offset, entries[i], entries[i + 1]});
			offset += entries[i];
		}
		c.described = offset;
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

Result<void> NbdReader::extents(const std::string &context, const ExtentFn &visit)
{
	const ByteRange whole{0, size_};
	return extents(context, std::span(&whole, 1), visit);
}

Result<std::shared_ptr<NbdReader::Call>> NbdReader::startExtents(const std::string &context, uint64_t from,
								  uint64_t to)
{
	auto call = std::make_shared<Call>();
	call->context = context;
	call->from = from;
	call->to = to;
	call->described = from;
	nbd_extent_callback extents{Call::onExtents, Call::hold(call), Call::release};
	nbd_completion_callback done{Call::onDone, Call::hold(call), Call::release};
	if (nbd_aio_block_status(nbd_, to - from, from, extents, done, 0) < 0)
		return nbdFail("block status of " + name_);
	return call;
}

Result<void> NbdReader::extents(const std::string &context, std::span<const ByteRange> ranges,
				const ExtentFn &visit)
{
	// Windows as large as the protocol's 32-bit lengths allow, on a
	// 1 MiB grid, and several in flight: a clean 16 TiB disk is 4,100
	// requests, and one at a time they would cost a round trip each.
	constexpr uint64_t kWindow = 0xFFF00000;
	constexpr size_t kInFlight = 8;
	size_t range = 0;
	uint64_t at = ranges.empty() ? 0 : ranges[0].offset;
	auto nextWindow = [&]() -> std::optional<std::pair<uint64_t, uint64_t>> {
		for (; range < ranges.size(); range++) {
			if (range > 0 && at < ranges[range].offset)
				at = ranges[range].offset;
			uint64_t end = std::min(ranges[range].offset + ranges[range].length, size_);
			if (at < end) {
				uint64_t to = std::min(end, (at / kWindow + 1) * kWindow);
				std::pair window{at, to};
				at = to;
				return window;
			}
		}
		return std::nullopt;
	};
	// Oldest window first: only its extents may be visited.
	std::deque<std::shared_ptr<Call>> queue;
	auto giveUp = [&queue] {
		for (const auto &c : queue)
			c->abandoned = true;
	};
	for (;;) {
		while (queue.size() < kInFlight) {
			auto window = nextWindow();
			if (!window)
				break;
			auto call = startExtents(context, window->first, window->second);
			if (!call) {
				giveUp();
				return std::unexpected(call.error());
			}
			queue.push_back(std::move(*call));
		}
		if (queue.empty())
			return {};
		std::shared_ptr<Call> head = queue.front();
		if (auto waited = waitFor([&head] { return head->done; }); !waited) {
			giveUp();
			return waited;
		}
		queue.pop_front();
		if (head->error != 0 || head->described <= head->from) {
			giveUp();
			if (head->error != 0)
				return fail(errc::kHypervisor, "block status of " + name_ + ": " + std::strerror(head->error));
			return fail(errc::kHypervisor, "the export of " + name_ + " described no extent at " +
							       std::to_string(head->from));
		}
		// Clipped to the window: a server may describe past it.
		for (const Call::Extent &e : head->extents)
			if (e.offset < head->to)
				visit(e.offset, std::min(e.length, head->to - e.offset), e.flags);
		// The server may describe less than asked: the rest of the window
		// is asked again, still before every later window.
		if (head->described < head->to) {
			auto rest = startExtents(context, head->described, head->to);
			if (!rest) {
				giveUp();
				return std::unexpected(rest.error());
			}
			queue.push_front(std::move(*rest));
		}
	}
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
