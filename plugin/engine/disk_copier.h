// Moves the chunks of one capture export into the store: reads the slots
// that may have changed, with hashing, compression and encryption spread
// over worker threads behind a bounded queue, so memory stays flat.
#pragma once

#include <vector>

#include "hypervisor/capture.h"
#include "snapshot_engine.h"
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
