// Which pack holds each chunk of the store, in memory that does not grow
// with the store (FORMAT.md, "The chunk map"). Learnt from the pack indexes,
// kept in sorted runs in unnamed files, each with a filter and one key per
// block of entries in memory; the newest entries in a small table until
// there are enough of them for a run. chunk_map_cache.h keeps the runs
// between processes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"
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
		// Where the runs' files are made, unnamed (nothing is left behind,
		// whatever crashes; the cache links the ones it keeps). Empty: the
		// temporary directory.
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
	// Merges the newest runs while they hold more than an eighth of what
	// the run before them holds, dropping what forgotten packs held: after
	// a store's first refresh. A map learnt whole becomes one run; one
	// loaded from the cache keeps its large run and merges what was
	// learnt since, so that an open rewrites in proportion to what changed
	// and a lookup asks a few runs at most (log8 of the store).
	Result<void> compact();
	// gc removed these packs: nothing found from now on is in them.
	void forget(const std::vector<uint32_t> &packs);
	// Concurrent calls are safe (with no add or forget meanwhile). An error
	// is a temporary file that could not be read.
	Result<std::optional<Location>> find(const ChunkId &id) const;

	// A run's file, as the cache (chunk_map_cache.h) keeps it: 48-byte
	// entries in id order, in this host's byte order.
	struct RunFile {
		int fd;
		uint64_t entries;
		int level;
		uint64_t checksum; // checksumOf() the file's bytes
	};
	// Every run, oldest first, once the table has become one.
	Result<std::vector<RunFile>> runFiles();
	// Adds a run saved before, read whole to check it (size, order, pack
	// numbers below `packs`, checksum) and to build its filter and keys.
	// Corrupt when it does not check out; the map is then as it was.
	Result<void> adopt(UniqueFd fd, const RunFile &saved, uint32_t packs);
	static uint64_t checksumOf(std::span<const uint8_t> bytes, uint64_t seed = 0);

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
