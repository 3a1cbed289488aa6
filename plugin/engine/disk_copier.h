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

struct CopyStats {
	uint64_t bytesRead = 0;
	uint64_t zeroChunks = 0;
};

// Updates `index` in place: every slot the export marks dirty (or every
// slot, without a dirty bitmap) gets the id of its current content.
// `cancelled` (may be empty) is polled between reads, besides the process's
// own SIGINT/SIGTERM flag.
Result<CopyStats> copyDisk(const hypervisor::DiskExport &exp, store::Store &store, store::ChunkWriter &writer,
			   store::SnapshotIndex &index, const ProgressFn &progress,
			   const std::function<bool()> &cancelled = {});

} // namespace virtsnap::engine
