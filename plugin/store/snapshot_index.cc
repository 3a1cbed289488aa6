#include "snapshot_index.h"
#include "chunk_writer.h"

#include <algorithm>
#include <cstring>

namespace virtsnap::store {

SnapshotIndex::SnapshotIndex(uint64_t volumeSize, uint32_t chunkSize)
	: volumeSize_(volumeSize), chunkSize_(chunkSize), slots_((volumeSize + chunkSize - 1) / chunkSize),
	  pages_((slots_ + kPageEntries - 1) / kPageEntries, nullptr)
{
}

SnapshotIndex::SnapshotIndex(SnapshotIndex &&other) noexcept
	: volumeSize_(other.volumeSize_), chunkSize_(other.chunkSize_), slots_(other.slots_),
	  domain_(other.domain_), pages_(std::move(other.pages_))
{
	other.pages_.clear();
}

SnapshotIndex &SnapshotIndex::operator=(SnapshotIndex &&other) noexcept
{
	if (this != &other) {
		for (Page *p : pages_)
			delete p;
		volumeSize_ = other.volumeSize_;
		chunkSize_ = other.chunkSize_;
		slots_ = other.slots_;
		domain_ = other.domain_;
		pages_ = std::move(other.pages_);
		other.pages_.clear();
	}
	return *this;
}

SnapshotIndex::~SnapshotIndex()
{
	for (Page *p : pages_)
		delete p;
}

SnapshotIndex SnapshotIndex::copy() const
{
	SnapshotIndex out(volumeSize_, chunkSize_);
	out.domain_ = domain_;
	for (size_t p = 0; p < pages_.size(); p++)
		if (const Page *page = pageAt(p))
			out.pages_[p] = new Page(*page);
	return out;
}

void SnapshotIndex::set(uint64_t slot, const ChunkId &id)
{
	std::atomic_ref<Page *> ref(pages_[slot / kPageEntries]);
	Page *page = ref.load(std::memory_order_acquire);
	if (!page) {
		if (isZeroId(id))
			return;
		// Two workers may start the same page: one page wins.
		auto fresh = std::make_unique<Page>();
		if (ref.compare_exchange_strong(page, fresh.get(), std::memory_order_acq_rel))
			page = fresh.release();
	}
	(*page)[slot % kPageEntries] = id;
}

void SnapshotIndex::clear(uint64_t firstSlot, uint64_t endSlot)
{
	endSlot = std::min(endSlot, slots_);
	for (uint64_t slot = firstSlot; slot < endSlot;) {
		uint64_t pageEnd = std::min(endSlot, (slot / kPageEntries + 1) * kPageEntries);
		if (Page *page = pages_[slot / kPageEntries])
			std::fill(page->begin() + long(slot % kPageEntries),
				  page->begin() + long(slot % kPageEntries + (pageEnd - slot)), kZeroChunk);
		slot = pageEnd;
	}
}

size_t SnapshotIndex::pagesHeld() const
{
	size_t n = 0;
	for (size_t p = 0; p < pages_.size(); p++)
		n += pageAt(p) != nullptr;
	return n;
}

uint32_t SnapshotIndex::slotLength(uint64_t slot) const
{
	uint64_t start = slot * chunkSize_;
	return uint32_t(std::min<uint64_t>(chunkSize_, volumeSize_ - start));
}

Result<SnapshotIndex> SnapshotIndex::load(Store &store, ChunkCodec &codec, const Manifest &m)
{
	VS_ASSIGN(SnapshotIndex index, fromPages(m, [&](const ChunkId &page) { return store.readChunk(codec, page); }));
	index.domain_ = codec.domain();
	return index;
}

Result<SnapshotIndex> SnapshotIndex::fromPages(const Manifest &m, const PageReader &readPage)
{
	SnapshotIndex index(m.volumeSize, m.chunkSize);
	// Manifest::parse checks this too; a manifest made otherwise must not
	// place pages outside the grid.
	if (m.pageEntries != kPageEntries || m.indexPages.size() != index.pages_.size())
		return fail(errc::kCorrupt, "index of " + m.snapshotId + " does not match its grid");
	for (size_t page = 0; page < m.indexPages.size(); page++) {
		const ChunkId &pageId = m.indexPages[page];
		if (isZeroId(pageId))
			continue;
		auto bytes = readPage(pageId);
		if (!bytes)
			return fail(bytes.error().code,
				    "index of " + m.snapshotId + ": " + bytes.error().message);
		uint64_t first = uint64_t(page) * m.pageEntries;
		uint64_t count = std::min<uint64_t>(m.pageEntries, index.slots() - first);
		if (bytes->size() != count * sizeof(ChunkId))
			return fail(errc::kCorrupt, "index page " + std::to_string(page) + " of " + m.snapshotId +
							    " has a wrong size");
		index.pages_[page] = new Page{};
		std::memcpy(index.pages_[page]->data(), bytes->data(), bytes->size());
	}
	return index;
}

Result<void> SnapshotIndex::save(ChunkWriter &writer, ChunkCodec &codec, Manifest &m, WriteTally *tally) const
{
	m.chunkSize = chunkSize_;
	m.volumeSize = volumeSize_;
	m.pageEntries = kPageEntries;
	m.indexPages.clear();
	// At once: grown page by page, the list of a 16 TiB disk (8 MiB) was
	// copied and faulted in over again, a fifth of an incremental's CPU.
	m.indexPages.reserve(pages_.size());
	for (size_t page = 0; page < pages_.size(); page++) {
		uint64_t count = std::min<uint64_t>(kPageEntries, slots_ - uint64_t(page) * kPageEntries);
		const Page *ids = pageAt(page);
		if (!ids || std::all_of(ids->begin(), ids->begin() + long(count), isZeroId)) {
			m.indexPages.push_back(kZeroChunk);
			continue;
		}
		std::span<const uint8_t> bytes(ids->front().data(), count * sizeof(ChunkId));
		VS_ASSIGN(auto id, writer.put(codec, bytes, ChunkType::IndexPage, tally));
		m.indexPages.push_back(id);
	}
	return {};
}

} // namespace virtsnap::store
