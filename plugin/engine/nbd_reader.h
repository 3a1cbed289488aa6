// Reads one capture export over NBD with libnbd: extents of a metadata
// context (base:allocation, qemu:dirty-bitmap:NAME) and data, either one
// read at a time or several in flight (libnbd's asynchronous API), which is
// what keeps QEMU's NBD server and the disk busy while the chunks of
// earlier reads are hashed and compressed.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>

#include "copy_pipeline.h"
#include "core/error.h"
#include "hypervisor/capture.h"

struct nbd_handle;

namespace virtsnap::engine {

class NbdReader : public ReadSource
{
public:
	static constexpr uint32_t kStateHole = 1;  // base:allocation
	static constexpr uint32_t kStateZero = 2;  // base:allocation
	static constexpr uint32_t kStateDirty = 1; // qemu:dirty-bitmap

	// `contexts` are the metadata contexts to negotiate.
	static Result<std::unique_ptr<NbdReader>> open(const hypervisor::DiskExport &exp,
						       const std::vector<std::string> &contexts);
	// Closes the connection; reads still in flight are abandoned (their
	// buffers are not touched after this returns).
	~NbdReader() override;

	uint64_t size() const { return size_; }
	// Walks [0, size) in the extents of `context`.
	Result<void> extents(const std::string &context,
			     const std::function<void(uint64_t offset, uint64_t length, uint32_t flags)> &visit);
	// One read, waited for.
	Result<void> read(std::span<uint8_t> out, uint64_t offset);

	// ReadSource: reads in flight. Every call, and every `done`, happens
	// on the one thread that drives the reader.
	Result<void> startRead(std::span<uint8_t> out, uint64_t offset, Done done) override;
	size_t inFlight() const override { return inFlight_; }
	Result<void> poll(int wakeFd, int timeoutMs) override;

private:
	struct Pending;
	static int onReadDone(void *user, int *error);
	static void freePending(void *user);

	NbdReader() = default;
	nbd_handle *nbd_ = nullptr;
	uint64_t size_ = 0;
	std::string name_;
	size_t inFlight_ = 0;
};

} // namespace virtsnap::engine
