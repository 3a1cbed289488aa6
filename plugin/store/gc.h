// Garbage collection of the store (FORMAT.md, "Garbage collection"): mark
// every chunk a manifest references, then remove or rewrite the packs that
// hold nothing else, and the leftovers of crashed writers, once they are
// older than a grace period.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "store.h"

namespace virtsnap::store {

struct GcOptions {
	// Objects younger than this are never removed or rewritten: they may
	// belong to a writer in flight, or to one that crashed a moment ago.
	std::chrono::seconds grace{3600};
	// Report what would be done; change nothing.
	bool dryRun = false;
	// A pack with live chunks is rewritten when at least this fraction of
	// its blob bytes is unreferenced (above 1: never).
	double repackThreshold = 0.5;
	// Chunks that writers in flight between calls hold without a lease
	// (block writes: engine/block_writes.h), asked once gc holds its
	// exclusive lease, when no such writer can add to them: kept as if a
	// manifest named them.
	std::function<Result<std::vector<ChunkId>>()> pinned;
};

struct GcReport {
	bool dryRun = false;
	uint64_t snapshots = 0;          // manifests marked
	uint64_t snapshotsHeld = 0;      // of those, locked or in the Recycle Bin (held_manifests.h)
	uint64_t recycledSnapshotsRemoved = 0; // out of the Recycle Bin, their retention over
	uint64_t chunksReferenced = 0;   // distinct ids they name, index pages included, pinned ones too
	uint64_t chunksPinned = 0;       // named by writers in flight (GcOptions::pinned)
	uint64_t chunksMissing = 0;      // referenced, but in no pack index (damage: run verify)
	uint64_t chunksUnreferenced = 0; // pack index entries no manifest names, kept ones included
	uint64_t chunksRemoved = 0;      // of those, gone with their pack or left out of a repack
	uint64_t chunksCopied = 0;       // live chunks rewritten by repacking
	uint64_t packsRemoved = 0;       // whole packs deleted, packs without index included
	uint64_t packsWithoutIndexRemoved = 0;
	uint64_t packsRepacked = 0;      // rewritten, then deleted
	uint64_t packsWritten = 0;       // new packs holding what repacking kept
	uint64_t packsSpared = 0;        // garbage, but younger than the grace period
	uint64_t tmpFilesRemoved = 0;
	uint64_t bytesRemoved = 0;       // size of the files deleted
	uint64_t bytesWritten = 0;       // size of the packs and indexes repacking wrote
	uint64_t bytesFreed = 0;         // bytesRemoved - bytesWritten
	// Things gc left alone on purpose (unreadable pack indexes, indexes
	// without pack, packs without index that alone hold referenced chunks).
	std::vector<std::string> warnings;
};

// Takes an exclusive lease on the store (IncorrectState, naming the holder,
// while another lease is held: a snapshot, restore or verify in flight on
// any host; a dry run too, so that what it reports is what a real run would
// do). Within this process, no ChunkWriter of `store` may be in use
// meanwhile without a lease: a writer that found a chunk in the store
// (dedup) may be about to reference it. Fails
// without removing anything when a manifest or one of its index pages
// cannot be read, since then what is referenced is unknown. Afterwards the
// chunk map of `store` names no deleted pack.
Result<GcReport> collectGarbage(Store &store, const GcOptions &opts);

} // namespace virtsnap::store
