// The data path of a capture, apart from where its bytes come from: reads of
// consecutive slots kept in flight on an asynchronous source, and the chunk
// work (zero check, id, compression, encryption, pack append) on worker
// threads. Everything goes through a pool of buffers allocated once, so
// memory is the same for a 64 MiB disk and a 64 TiB one; the pool also is
// the queue between the reader and the workers, so a slow store slows the
// reads instead of piling data up.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "core/error.h"
#include "slot_runs.h"
#include "snapshot_engine.h"
#include "store/snapshot_index.h"

namespace virtsnap::engine {

// A reader with several reads in flight whose completions run on the thread
// that calls poll(). NbdReader is the real one; tests have their own.
class ReadSource
{
public:
	using Done = std::function<void(Result<void>)>;
	virtual ~ReadSource() = default;
	// Starts reading out.size() bytes at `offset` into `out`, which must
	// stay valid until `done` has run. An error here means the read was
	// not started (and `done` will not run).
	virtual Result<void> startRead(std::span<uint8_t> out, uint64_t offset, Done done) = 0;
	// Reads started whose `done` has not run yet.
	virtual size_t inFlight() const = 0;
	// Waits at most `timeoutMs` for the source to make progress or for
	// `wakeFd` (an eventfd; -1: none) to become readable, which it then
	// drains; runs the `done` of every read that finished meanwhile.
	virtual Result<void> poll(int wakeFd, int timeoutMs) = 0;
	// Gives up on every read in flight: after it no `done` runs and no
	// buffer is written. For a source that stopped answering, so that the
	// caller's buffers can go; one that cannot does nothing.
	virtual void abandon() {}
};

struct PipelineOptions {
	// Bytes per read, rounded to whole chunks. 1 MiB with 8 in flight
	// cost QEMU's NBD server the least CPU per byte of the sizes measured
	// (tests/bench/RESULTS.md); fewer, larger reads make it allocate and
	// fault in a fresh buffer per request.
	uint32_t requestBytes = 1u << 20;
	unsigned maxInFlight = 8;
	unsigned workers = 0; // 0: one per hardware thread
	unsigned buffers = 0; // 0: maxInFlight + 2 per worker
};

struct PipelineStats {
	uint64_t bytesRead = 0;
	uint64_t zeroChunks = 0;   // read, and found to be all zeros
	uint64_t bufferBytes = 0;  // the buffer pool: all the data memory the copy used
	size_t peakInFlight = 0;   // most reads the source had in flight at once
};

// Called on worker thread `worker` (0 .. workers-1) for every chunk that is
// not all zeros; returns the id the chunk has in the store.
using PutChunk = std::function<Result<store::ChunkId>(unsigned worker, std::span<const uint8_t> data)>;

// The number of worker threads `options` asks for.
unsigned pipelineWorkers(const PipelineOptions &options);

// Reads every slot of `index` in the runs `wanted` from `source` (slot s at
// offset s * chunk size; slots past the index are ignored) and sets that slot to the chunk's id: the zero id
// for all-zero chunks (without calling `put`), else what `put` returns.
// Other slots are left alone. The first error (of the source, of a
// `put`, or cancellation: `cancelled()` or SIGINT/SIGTERM, checked between
// reads) stops everything; the call returns only once no read is in flight
// and no worker runs, so the caller's buffers and index are free to go.
Result<PipelineStats> copySlots(ReadSource &source, const SlotRuns &wanted, store::SnapshotIndex &index,
				const PutChunk &put, const ProgressFn &progress,
				const std::function<bool()> &cancelled, const PipelineOptions &options = {});

} // namespace virtsnap::engine
