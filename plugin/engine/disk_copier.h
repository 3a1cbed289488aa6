// Moves the chunks of one capture export into the store: reads the slots
// that may have changed and hold data (base:allocation and the dirty
// bitmap decide; holes cost nothing) with several NBD reads in flight, and
// hashes, compresses and encrypts them on every core (copy_pipeline.h), in
// a fixed pool of buffers, so memory stays flat whatever the disk size.
#pragma once

#include <vector>

#include "hypervisor/capture.h"
#include "snapshot_engine.h"
#include "store/chunk_writer.h"
#include "store/snapshot_index.h"

namespace virtsnap::engine {

// One copy's own figures, whoever else writes through the same writer.
struct CopyStats {
	uint64_t bytesRead = 0;
	uint64_t zeroChunks = 0;
	uint64_t chunksNew = 0;
	uint64_t chunksReused = 0;
	uint64_t bytesAdded = 0;
};

// Updates `index` in place: every slot the export marks dirty (or every
// slot, without a dirty bitmap) gets the id of its current content.
// `cancelled` (may be empty) is polled between reads, besides the process's
// own SIGINT/SIGTERM flag. Several copies may share `writer` at once.
// `workers`: the copy's worker threads, 0 one per hardware thread.
Result<CopyStats> copyDisk(const hypervisor::DiskExport &exp, store::Store &store, store::ChunkWriter &writer,
			   store::SnapshotIndex &index, const ProgressFn &progress,
			   const std::function<bool()> &cancelled = {}, unsigned workers = 0);

} // namespace virtsnap::engine
