#include "nbd_reader.h"

#include <libnbd.h>

#include <algorithm>

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

} // namespace virtsnap::engine
