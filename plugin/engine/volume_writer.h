// The restore's data path: writes the chunks a snapshot index names into an
// image file, fast enough that the disk, not the CPU, sets the pace.
#pragma once

#include <functional>
#include <span>

#include "snapshot_engine.h"
#include "store/snapshot_index.h"

namespace virtsnap::engine {

// Writes every non-zero slot of `index` into `fd`, which is already sized
// (and so sparse where nothing is written: zero chunks and holes cost
// nothing). Blobs are read in pack order, several per read, and decrypted,
// decompressed and written on every core; writeback starts as the data
// comes, so the caller's final fsync has little left to do.
Result<void> writeVolume(store::Store &store, const store::SnapshotIndex &index, int fd, const ProgressFn &progress);

// The same into `sink` instead of a file (a qcow2 image's writer,
// qcow2_image_writer.h), called from several threads at once. Nothing is
// written for zero chunks and holes: the sink's image must read them as
// zeros.
using VolumeSink = std::function<Result<void>(std::span<const uint8_t> data, uint64_t offset)>;
Result<void> writeVolume(store::Store &store, const store::SnapshotIndex &index, const VolumeSink &sink,
			 const ProgressFn &progress);

} // namespace virtsnap::engine
