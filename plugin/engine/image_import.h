// import-image: a snapshot from an image file, through the very path
// start-snapshot, put-snapshot-block and complete-snapshot take
// (block_writes.h), so an import is checked as any block write is (every
// block's SHA-256, the count, the LINEAR aggregate).
//
// A raw image is read directly, its holes skipped (SEEK_DATA). A qcow2 is
// read as its guest sees it: qemu-nbd exports it read-only on a private
// socket and NbdReader reads it, asking base:allocation which extents hold
// data, so neither a temporary raw copy nor the image's holes cost a
// byte. Blocks that read as zeros are not put, as EBS's importers do.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "block_writes.h"
#include "snapshot_engine.h"

namespace virtsnap::engine {

struct ImportRequest {
	int fd = -1;            // the image, opened by the caller (as whoever asked)
	std::string format;     // "raw" | "qcow2"; "" to tell by the image's magic
	StartRequest start;     // volumeSizeGiB 0: the image's size, rounded up to GiB
	ProgressFn progress;
	// Called once the snapshot is pending, before any block is put
	// (the daemon shows the pending snapshot in its catalog).
	std::function<Result<void>(const BlockWrite &)> started;
	// Why a qcow2 may not be read here, if it may not: qemu-nbd opens what
	// the image's header names (a backing or data file) as whoever runs
	// it, and a caller who owns the image can rewrite that header between
	// any check and qemu-nbd's open. virtsnapd (root) refuses qcow2 to
	// other callers with this message; AccessDenied.
	std::string qcow2Refused;
	// How long the qcow2's qemu-nbd may leave a request unanswered before
	// the import gives up on it ([hypervisor] timeout).
	std::chrono::milliseconds answerTimeout = hypervisor::kDefaultMonitorTimeout;
};

struct ImportOutcome {
	BlockWrite write;       // as started
	CompleteOutcome outcome;
	uint64_t blocksPut = 0;
};

// Errors before the snapshot exists (an unreadable image, a bad format)
// come back as an Error and change nothing; a failure after start ends the
// snapshot in error (BlockWrites::abandon) and comes back as that Error.
Result<ImportOutcome> importImage(store::Store &store, BlockWrites &writes, const ImportRequest &request);

} // namespace virtsnap::engine
