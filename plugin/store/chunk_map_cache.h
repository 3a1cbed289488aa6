// The chunk map kept between processes in the host's state directory
// (FORMAT.md, "The chunk map"), so that an open learns only the pack
// indexes added since the last save. A cache: whatever is wrong with it
// (missing, damaged, another store's, another format's) loads nothing, and
// the map is learnt from the pack indexes as without it. Nothing of it is
// in the store: each host has its own.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "chunk_map.h"
#include "pack.h"

namespace virtsnap::store {

class ChunkMapCache
{
public:
	// The packs by the numbers the map's entries give them; one gc removed
	// keeps its number (the runs may still hold its entries).
	struct Pack {
		PackId id;
		bool forgotten = false;
	};

	// The state directory's chunk-map/<store id>/: the store id, because a
	// remote store's state directory may serve several stores.
	static std::filesystem::path dirFor(const std::filesystem::path &stateDir, const std::string &storeId);

	// `dir` exists, 0700.
	ChunkMapCache(std::filesystem::path dir, std::string storeId);

	// Adds to `map` (empty, its runs made in dir()) the runs saved last and
	// returns the packs by number; nullopt, with `map` to be dropped and
	// `why` saying what was wrong, when nothing usable was saved.
	std::optional<std::vector<Pack>> load(ChunkMap &map, std::string *why) const;
	// Replaces what was saved with the map's runs (linked into dir(), not
	// copied, when they were made there) and `packs`. A crash leaves the
	// old or the new; of two savers the last one's stays, whole.
	Result<void> save(ChunkMap &map, const std::vector<Pack> &packs) const;

	const std::filesystem::path &dir() const { return dir_; }

private:
	Result<std::string> nameRun(int fd) const;
	void removeUnnamed(const std::vector<std::string> &kept) const;

	std::filesystem::path dir_;
	std::string storeId_;
};

} // namespace virtsnap::store
