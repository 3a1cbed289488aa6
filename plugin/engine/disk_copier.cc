#include "disk_copier.h"

#include <algorithm>

#include "copy_pipeline.h"
#include "nbd_reader.h"

namespace virtsnap::engine {

namespace {

// Marks the slots overlapped by [offset, offset + length).
void markSlots(std::vector<bool> &slots, uint32_t chunkSize, uint64_t offset, uint64_t length)
{
	if (length == 0 || slots.empty())
		return;
	uint64_t first = offset / chunkSize;
	uint64_t last = std::min<uint64_t>((offset + length - 1) / chunkSize, slots.size() - 1);
	for (uint64_t s = first; s <= last; s++)
		slots[s] = true;
}

} // namespace

Result<CopyStats> copyDisk(const hypervisor::DiskExport &exp, store::Store &store, store::ChunkWriter &writer,
			   store::SnapshotIndex &index, const ProgressFn &progress,
			   const std::function<bool()> &cancelled)
{
	const std::string allocation = "base:allocation";
	std::vector<std::string> contexts{allocation};
	if (!exp.dirtyBitmapContext.empty())
		contexts.push_back(exp.dirtyBitmapContext);
	VS_ASSIGN(auto reader, NbdReader::open(exp, contexts));
	if (reader->size() != index.volumeSize())
		return fail(errc::kHypervisor, "the export of " + exp.diskId + " has " +
						       std::to_string(reader->size()) + " bytes, expected " +
						       std::to_string(index.volumeSize()));

	// Holes and zero extents (base:allocation) cost neither a read nor a
	// hash: their slots are the zero id at once.
	const uint32_t chunkSize = index.chunkSize();
	std::vector<bool> hasData(index.slots(), false);
	VS_TRY(reader->extents(allocation, [&](uint64_t off, uint64_t len, uint32_t flags) {
		if (!(flags & NbdReader::kStateZero))
			markSlots(hasData, chunkSize, off, len);
	}));
	std::vector<bool> changed(index.slots(), exp.dirtyBitmapContext.empty());
	if (!exp.dirtyBitmapContext.empty())
		VS_TRY(reader->extents(exp.dirtyBitmapContext, [&](uint64_t off, uint64_t len, uint32_t flags) {
			if (flags & NbdReader::kStateDirty)
				markSlots(changed, chunkSize, off, len);
		}));

	CopyStats stats;
	std::vector<bool> wanted(index.slots(), false);
	for (uint64_t s = 0; s < index.slots(); s++) {
		if (!changed[s])
			continue;
		if (hasData[s]) {
			wanted[s] = true;
			continue;
		}
		index.set(s, store::kZeroChunk);
		stats.zeroChunks++;
	}
	// Freed before the copy: a TiB disk has 16 M slots, one bit each.
	hasData = {};
	changed = {};

	PipelineOptions options;
	std::vector<std::unique_ptr<store::ChunkCodec>> codecs;
	for (unsigned w = 0; w < pipelineWorkers(options); w++) {
		// The index says which key domain the disk's snapshot is under.
		VS_ASSIGN(auto codec, store.newCodec(index.domain()));
		codecs.push_back(std::move(codec));
	}
	options.workers = unsigned(codecs.size());
	auto put = [&](unsigned worker, std::span<const uint8_t> data) {
		return writer.put(*codecs[worker], data, store::ChunkType::Data);
	};
	VS_ASSIGN(auto copied, copySlots(*reader, wanted, index, put, progress, cancelled, options));
	stats.bytesRead = copied.bytesRead;
	stats.zeroChunks += copied.zeroChunks;
	return stats;
}

} // namespace virtsnap::engine
