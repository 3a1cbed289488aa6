// Reads one capture export over NBD with libnbd: extents of a metadata
// context (base:allocation, qemu:dirty-bitmap:NAME) and data, several reads
// in flight (libnbd's asynchronous API), which is what keeps QEMU's NBD
// server and the disk busy while the chunks of earlier reads are hashed and
// compressed. Every request, the handshake included, goes through the
// asynchronous API so that none waits longer than the export's answer
// timeout: a stopped or hung QEMU fails the copy instead of holding it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "copy_pipeline.h"
#include "core/error.h"
#include "hypervisor/capture.h"
#include "nbd_connection.h"

namespace virtsnap::engine {

class NbdReader : public ReadSource
{
public:
	static constexpr uint32_t kStateHole = 1;  // base:allocation
	static constexpr uint32_t kStateZero = 2;  // base:allocation
	static constexpr uint32_t kStateDirty = 1; // qemu:dirty-bitmap

	// `contexts` are the metadata contexts to negotiate. `program` is who
	// serves the export, for the errors ("QEMU's export of vda").
	static Result<std::unique_ptr<NbdReader>> open(const hypervisor::DiskExport &exp,
						       const std::vector<std::string> &contexts,
						       const std::string &program = "QEMU");
	// Closes the connection; reads still in flight are abandoned (their
	// buffers are not touched after this returns).
	~NbdReader() override;

	// The error every request gets once the export has answered nothing
	// for the answer timeout.
	Error noAnswer() const;

	uint64_t size() const { return size_; }
	using ExtentFn = std::function<void(uint64_t offset, uint64_t length, uint32_t flags)>;
	struct ByteRange {
		uint64_t offset = 0;
		uint64_t length = 0;
	};
	// Walks [0, size) in the extents of `context`, in offset order.
	Result<void> extents(const std::string &context, const ExtentFn &visit);
	// Walks only `ranges` (ascending, disjoint; clipped to the size), in
	// offset order, with several requests in flight; extents are clipped
	// to the ranges.
	Result<void> extents(const std::string &context, std::span<const ByteRange> ranges, const ExtentFn &visit);
	// ReadSource: reads in flight. Every call, and every `done`, happens
	// on the one thread that drives the reader.
	Result<void> startRead(std::span<uint8_t> out, uint64_t offset, Done done) override;
	size_t inFlight() const override { return inFlight_; }
	// Fails with noAnswer() when reads are in flight and none has come
	// back for the answer timeout.
	Result<void> poll(int wakeFd, int timeoutMs) override;
	void abandon() override;

private:
	struct Pending;
	struct Call;
	static int onReadDone(void *user, int *error);
	static void freePending(void *user);

	NbdReader() = default;
	// Sends one block-status request over [from, to).
	Result<std::shared_ptr<Call>> startExtents(const std::string &context, uint64_t from, uint64_t to);

	std::unique_ptr<NbdConnection> conn_;
	uint64_t size_ = 0;
	std::string name_;
	size_t inFlight_ = 0;
};

} // namespace virtsnap::engine
