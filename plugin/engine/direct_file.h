// Writes into a restore's raw target with O_DIRECT where it can: the page
// cache would cost a copy of every byte and its writeback a second pass
// over them (tests/bench/RESULTS.md, "Why the restore misses its target"),
// for data nobody reads soon.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "core/error.h"

namespace virtsnap::engine {

class DirectFile
{
public:
	// Sets O_DIRECT on `fd` (a regular file or a block device) if its file
	// system takes it; else every write goes buffered, as before.
	explicit DirectFile(int fd);
	// Gives `fd` back with the flags it came with.
	~DirectFile();
	DirectFile(const DirectFile &) = delete;
	DirectFile &operator=(const DirectFile &) = delete;

	// What buffers, offsets and lengths of direct writes are aligned to:
	// the device's logical block size, at least 4096.
	size_t alignment() const { return alignment_; }
	int fd() const { return fd_; }
	bool direct() const { return direct_; }

	// Writes `data` at `offset`; called from several threads at distinct
	// offsets. Direct when `data` and `offset` are aligned: an unaligned
	// end (the last block of a volume whose size is no multiple of the
	// alignment) is kept and written buffered by finish().
	Result<void> write(std::span<const uint8_t> data, uint64_t offset);
	// Writes what write() kept; the caller's fsync then makes all durable.
	Result<void> finish();

private:
	Result<void> writeRun(std::span<const uint8_t> data, uint64_t offset);
	Result<void> stopDirect();

	struct Tail {
		uint64_t offset;
		std::vector<uint8_t> bytes;
	};

	const int fd_;
	int originalFlags_ = -1;
	size_t alignment_ = 4096;
	std::atomic<bool> direct_{false};
	std::mutex mutex_; // tails_, and turning direct_ off
	std::vector<Tail> tails_;
};

// A buffer aligned for direct writes, freed with std::free.
struct FreeAligned {
	void operator()(uint8_t *p) const;
};
using AlignedBuffer = std::unique_ptr<uint8_t[], FreeAligned>;
// Null when the memory is not there.
AlignedBuffer allocateAligned(size_t alignment, size_t bytes);

} // namespace virtsnap::engine
