#include "nbd_reader.h"

#include <libnbd.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace virtsnap::engine {

namespace {

std::unexpected<Error> nbdFail(const std::string &what)
{
	const char *msg = nbd_get_error();
	return fail(errc::kHypervisor, what + ": " + (msg ? msg : "unknown NBD error"));
}

struct ExtentVisit {
	const std::string *context;
	const std::function<void(uint64_t, uint64_t, uint32_t)> *visit;
	uint64_t end = 0; // how far the server has described
};

int onExtents(void *user, const char *metacontext, uint64_t offset, uint32_t *entries, size_t count, int *)
{
	auto *v = static_cast<ExtentVisit *>(user);
	if (*v->context != metacontext)
		return 0;
	for (size_t i = 0; i + 1 < count; i += 2) {
		(*v->visit)(offset, entries[i], entries[i + 1]);
		offset += entries[i];
	}
	v->end = offset;
	return 0;
}

} // namespace

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
	if (nbd_connect_unix(r->nbd_, exp.nbdSocket.c_str()) != 0)
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
	if (nbd_) {
		// With reads in flight a clean NBD_CMD_DISC would wait for them.
		if (inFlight_ == 0)
			nbd_shutdown(nbd_, 0);
		nbd_close(nbd_);
	}
}

Result<void> NbdReader::extents(const std::string &context,
				const std::function<void(uint64_t, uint64_t, uint32_t)> &visit)
{
	// Queries go in windows: the protocol's lengths are 32-bit.
	constexpr uint64_t kWindow = 1ull << 30;
	uint64_t offset = 0;
	while (offset < size_) {
		uint64_t want = std::min(kWindow, size_ - offset);
		ExtentVisit v{&context, &visit, offset};
		nbd_extent_callback cb{onExtents, &v, nullptr};
		if (nbd_block_status(nbd_, want, offset, cb, 0) != 0)
			return nbdFail("block status of " + name_);
		if (v.end <= offset)
			return fail(errc::kHypervisor, "the export of " + name_ + " described no extent at " +
							       std::to_string(offset));
		offset = std::min(v.end, size_);
	}
	return {};
}

Result<void> NbdReader::read(std::span<uint8_t> out, uint64_t offset)
{
	if (nbd_pread(nbd_, out.data(), out.size(), offset, 0) != 0)
		return nbdFail("read " + name_ + " at " + std::to_string(offset));
	return {};
}

Result<void> NbdReader::startRead(std::span<uint8_t> out, uint64_t offset, Done done)
{
	auto *p = new Pending{this, offset, out.size(), std::move(done)};
	nbd_completion_callback cb{onReadDone, p, freePending};
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
