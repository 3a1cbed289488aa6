// One chunk id per grid slot of a disk (FORMAT.md, "Snapshot index").
#pragma once

#include <functional>
#include <vector>

#include "chunk_id.h"
#include "manifest.h"
#include "store.h"

namespace virtsnap::store {

class SnapshotIndex
{
public:
	// 1024 ids = 32 KiB pages: one page covers 64 MiB at 64 KiB chunks, so
	// a scattered 1% change rewrites few pages.
	static constexpr uint32_t kPageEntries = kIndexPageEntries;

	// An index of all-zero slots.
	SnapshotIndex(uint64_t volumeSize, uint32_t chunkSize);
	static Result<SnapshotIndex> load(Store &store, ChunkCodec &codec, const Manifest &m);
	// load's checks and assembly, with the pages' plaintext from `readPage`
	// rather than from a store.
	using PageReader = std::function<Result<Bytes>(const ChunkId &page)>;
	static Result<SnapshotIndex> fromPages(const Manifest &m, const PageReader &readPage);

	uint64_t volumeSize() const { return volumeSize_; }
	uint32_t chunkSize() const { return chunkSize_; }
	uint64_t slots() const { return ids_.size(); }
	uint32_t slotLength(uint64_t slot) const;
	const ChunkId &at(uint64_t slot) const { return ids_[slot]; }
	void set(uint64_t slot, const ChunkId &id) { ids_[slot] = id; }

	// Stores every page (unchanged pages dedup to nothing) and fills the
	// manifest's chunkSize, pageEntries and indexPages.
	Result<void> save(ChunkWriter &writer, ChunkCodec &codec, Manifest &m) const;

private:
	uint64_t volumeSize_;
	uint32_t chunkSize_;
	std::vector<ChunkId> ids_;
};

} // namespace virtsnap::store
