// Reads one capture export over NBD with libnbd: extents of a metadata
// context (base:allocation, qemu:dirty-bitmap:NAME) and data.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/error.h"
#include "hypervisor/capture.h"

struct nbd_handle;

namespace virtsnap::engine {

class NbdReader
{
public:
	static constexpr uint32_t kStateHole = 1;  // base:allocation
	static constexpr uint32_t kStateZero = 2;  // base:allocation
	static constexpr uint32_t kStateDirty = 1; // qemu:dirty-bitmap

	// `contexts` are the metadata contexts to negotiate.
	static Result<std::unique_ptr<NbdReader>> open(const hypervisor::DiskExport &exp,
						       const std::vector<std::string> &contexts);
	~NbdReader();

	uint64_t size() const { return size_; }
	// Walks [0, size) in the extents of `context`.
	Result<void> extents(const std::string &context,
			     const std::function<void(uint64_t offset, uint64_t length, uint32_t flags)> &visit);
	Result<void> read(std::span<uint8_t> out, uint64_t offset);

private:
	NbdReader() = default;
	nbd_handle *nbd_ = nullptr;
	uint64_t size_ = 0;
	std::string name_;
};

} // namespace virtsnap::engine
