// Which pack holds each chunk of the store, in memory that does not grow
// with the store (FORMAT.md, "The chunk map"). Learnt from the pack indexes,
// kept in sorted runs in unlinked temporary files, each with a filter and
// one key per block of entries in memory; the newest entries in a small
// table until there are enough of them for a run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "chunk_id.h"
#include "pack.h"

namespace virtsnap::store {

class ChunkMap
{
public:
	struct Location {
		uint32_t pack;
		uint32_t length;
		uint64_t offset;
	};

	struct Options {
		// Where the runs' files are made (and unlinked at once: nothing is
		// left behind, whatever crashes). Empty: the temporary directory.
		std::filesystem::path dir;
		// Entries held in memory before they become a run: about 70 bytes
		// each.
		size_t tableEntries = 128 * 1024;
		// The filter in front of each run: a lookup of a chunk that is not
		// there reads the disk in about 6% of cases at 6 bits.
		uint32_t filterBitsPerEntry = 6;
	};

	explicit ChunkMap(Options options);
	~ChunkMap();
	ChunkMap(const ChunkMap &) = delete;
	ChunkMap &operator=(const ChunkMap &) = delete;

	// The entries of the pack numbered `pack` (numbers grow as packs are
	// learnt). A chunk stored in several packs is found in the one with
	// the lowest number that is not forgotten.
	Result<void> add(uint32_t pack, std::span<const PackEntry> entries);
	// Merges every run into one, dropping what forgotten packs held: after
	// a store's first refresh, so that each lookup has one run to ask.
	Result<void> compact();
	// gc removed these packs: nothing found from now on is in them.
	void forget(const std::vector<uint32_t> &packs);
	// Concurrent calls are safe (with no add or forget meanwhile). An error
	// is a temporary file that could not be read.
	Result<std::optional<Location>> find(const ChunkId &id) const;

	// What it holds now, for tests and the benchmark.
	size_t runs() const { return runs_.size(); }
	uint64_t entries() const;

private:
	class Run;

	Result<void> flushTable();
	Result<void> mergeRuns(size_t first, int level);
	bool alive(uint32_t pack) const { return pack >= dead_.size() || !dead_[pack]; }

	Options options_;
	// Every copy: a chunk in two packs stays found when gc removes one.
	std::unordered_multimap<ChunkId, Location, ChunkIdHash> table_;
	std::vector<std::unique_ptr<Run>> runs_; // oldest (and largest) first
	std::vector<bool> dead_;                 // by pack number
};

} // namespace virtsnap::store
