#include "nbd_reader.h"

#include <libnbd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>

namespace virtsnap::engine {

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
	p->reader->conn_->answered();
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
						    const std::vector<std::string> &contexts, const std::string &program)
{
	std::unique_ptr<NbdReader> r(new NbdReader());
	r->name_ = exp.diskId;
	VS_ASSIGN(r->conn_, NbdConnection::create({program + "'s export of " + exp.diskId, program,
						   errc::kHypervisor, exp.answerTimeout}));
	nbd_handle *nbd = r->conn_->handle();
	for (const std::string &c : contexts)
		if (nbd_add_meta_context(nbd, c.c_str()) != 0)
			return r->conn_->failed("request " + c);
	// libnbd zeroes every read buffer first, against applications that
	// use a buffer whose read failed. Ours never do (a failed read fails
	// the copy and its buffer is not looked at), and the zeroing is a
	// memset of the whole disk.
	if (nbd_set_pread_initialize(nbd, false) != 0)
		return r->conn_->failed("configure the NBD handle");
	if (nbd_set_export_name(nbd, exp.exportName.c_str()) != 0)
		return r->conn_->failed("set export name");
	VS_TRY(r->conn_->connectUnix(exp.nbdSocket));
	for (const std::string &c : contexts)
		if (nbd_can_meta_context(nbd, c.c_str()) != 1)
			return fail(errc::kHypervisor, "the export of " + exp.diskId + " does not offer " + c);
	int64_t size = nbd_get_size(nbd);
	if (size < 0)
		return r->conn_->failed("size of the export of " + exp.diskId);
	r->size_ = uint64_t(size);
	return r;
}

// The connection disconnects cleanly when nothing is in flight.
NbdReader::~NbdReader() = default;

Error NbdReader::noAnswer() const
{
	return conn_->noAnswer();
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
	if (nbd_aio_block_status(conn_->handle(), to - from, from, extents, done, 0) < 0)
		return conn_->failed("block status of " + name_);
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
		if (auto waited = conn_->waitFor([&head] { return head->done; }); !waited) {
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
	if (!conn_->handle())
		return std::unexpected(noAnswer());
	auto *p = new Pending{this, offset, out.size(), std::move(done)};
	nbd_completion_callback cb{onReadDone, p, freePending};
	// The timeout counts from the first read of a quiet connection, not
	// from its last answer long ago.
	if (inFlight_ == 0)
		conn_->answered();
	// Counted before the call: a read the server answers at once may
	// complete inside it.
	inFlight_++;
	if (nbd_aio_pread(conn_->handle(), out.data(), out.size(), offset, cb, 0) < 0) {
		inFlight_--;
		// freePending has run already (libnbd frees on failure too).
		return conn_->failed("read " + name_ + " at " + std::to_string(offset));
	}
	return {};
}

Result<void> NbdReader::poll(int wakeFd, int timeoutMs)
{
	if (!conn_->handle())
		return std::unexpected(noAnswer());
	VS_TRY(conn_->pollOnce(wakeFd, timeoutMs));
	if (inFlight_ > 0)
		VS_TRY(conn_->checkAnswered());
	return {};
}

void NbdReader::abandon()
{
	conn_->abandon();
	inFlight_ = 0;
}

} // namespace virtsnap::engine
