#include "snapshot_index.h"
#include "chunk_writer.h"

#include <algorithm>
#include <cstring>

namespace virtsnap::store {

SnapshotIndex::SnapshotIndex(uint64_t volumeSize, uint32_t chunkSize)
	: volumeSize_(volumeSize), chunkSize_(chunkSize), ids_((volumeSize + chunkSize - 1) / chunkSize)
{
}

uint32_t SnapshotIndex::slotLength(uint64_t slot) const
{
	uint64_t start = slot * chunkSize_;
	return uint32_t(std::min<uint64_t>(chunkSize_, volumeSize_ - start));
}

Result<SnapshotIndex> SnapshotIndex::load(Store &store, ChunkCodec &codec, const Manifest &m)
{
	return fromPages(m, [&](const ChunkId &page) { return store.readChunk(codec, page); });
}

Result<SnapshotIndex> SnapshotIndex::fromPages(const Manifest &m, const PageReader &readPage)
{
	SnapshotIndex index(m.volumeSize, m.chunkSize);
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
		std::memcpy(index.ids_[first].data(), bytes->data(), bytes->size());
	}
	return index;
}

Result<void> SnapshotIndex::save(ChunkWriter &writer, ChunkCodec &codec, Manifest &m) const
{
	m.chunkSize = chunkSize_;
	m.volumeSize = volumeSize_;
	m.pageEntries = kPageEntries;
	m.indexPages.clear();
	for (uint64_t first = 0; first < ids_.size(); first += kPageEntries) {
		uint64_t count = std::min<uint64_t>(kPageEntries, ids_.size() - first);
		auto begin = ids_.begin() + long(first);
		if (std::all_of(begin, begin + long(count), isZeroId)) {
			m.indexPages.push_back(kZeroChunk);
			continue;
		}
		std::span<const uint8_t> page(ids_[first].data(), count * sizeof(ChunkId));
		VS_ASSIGN(auto id, writer.put(codec, page, ChunkType::IndexPage));
		m.indexPages.push_back(id);
	}
	return {};
}

} // namespace virtsnap::store
