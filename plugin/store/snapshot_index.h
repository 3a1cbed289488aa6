// One chunk id per grid slot of a disk (FORMAT.md, "Snapshot index").
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "chunk_id.h"
#include "manifest.h"
#include "store.h"
#include "write_tally.h"

namespace virtsnap::store {

class SnapshotIndex
{
public:
	// 1024 ids = 32 KiB pages: one page covers 64 MiB at 64 KiB chunks, so
	// a scattered 1% change rewrites few pages.
	static constexpr uint32_t kPageEntries = kIndexPageEntries;

	// An index of all-zero slots.
	SnapshotIndex(uint64_t volumeSize, uint32_t chunkSize);
	SnapshotIndex(SnapshotIndex &&other) noexcept;
	SnapshotIndex &operator=(SnapshotIndex &&other) noexcept;
	SnapshotIndex(const SnapshotIndex &) = delete;
	SnapshotIndex &operator=(const SnapshotIndex &) = delete;
	~SnapshotIndex();
	// An explicit copy (pages and all): copies are rare and cost memory.
	SnapshotIndex copy() const;
	static Result<SnapshotIndex> load(Store &store, ChunkCodec &codec, const Manifest &m);
	// load's checks and assembly, with the pages' plaintext from `readPage`
	// rather than from a store.
	using PageReader = std::function<Result<Bytes>(const ChunkId &page)>;
	static Result<SnapshotIndex> fromPages(const Manifest &m, const PageReader &readPage);

	uint64_t volumeSize() const { return volumeSize_; }
	uint32_t chunkSize() const { return chunkSize_; }
	uint64_t slots() const { return slots_; }
	// The key domain its chunks are sealed under (load: the codec's; the
	// zero id, the store's default, for one built in memory).
	const DomainId &domain() const { return domain_; }
	void setDomain(const DomainId &domain) { domain_ = domain; }
	uint32_t slotLength(uint64_t slot) const;
	const ChunkId &at(uint64_t slot) const
	{
		const Page *page = pageAt(slot / kPageEntries);
		return page ? (*page)[slot % kPageEntries] : kZeroChunk;
	}
	// Threads may set distinct slots at once (the copy's workers do).
	void set(uint64_t slot, const ChunkId &id);
	// Sets [firstSlot, endSlot) to the zero id. Pages not held are zero
	// already and are skipped, so a huge hole costs per page, not per
	// slot. Not concurrent with set().
	void clear(uint64_t firstSlot, uint64_t endSlot);
	// Pages that hold a non-zero id now: what the index costs in memory,
	// 32 KiB each.
	size_t pagesHeld() const;
	// Whether the page of `slot` may hold a non-zero id: none past it in
	// that page do when not, so a scan of a sparse disk can skip them.
	bool pageHeldAt(uint64_t slot) const { return pageAt(slot / kPageEntries) != nullptr; }

	// Stores every page (unchanged pages dedup to nothing) and fills the
	// manifest's chunkSize, pageEntries and indexPages. `tally` (may be
	// null) counts the pages' puts.
	Result<void> save(ChunkWriter &writer, ChunkCodec &codec, Manifest &m, WriteTally *tally = nullptr) const;

private:
	using Page = std::array<ChunkId, kPageEntries>;

	const Page *pageAt(size_t page) const
	{
		return std::atomic_ref<Page *>(const_cast<Page *&>(pages_[page])).load(std::memory_order_acquire);
	}

	uint64_t volumeSize_;
	uint32_t chunkSize_;
	uint64_t slots_;
	DomainId domain_{};
	// One per page of the grid, owned; none where every id is zero, so that
	// the holes of a huge sparse disk cost 8 bytes per 64 MiB. Set through
	// atomic_ref, as workers fill pages concurrently.
	std::vector<Page *> pages_;
};

} // namespace virtsnap::store
