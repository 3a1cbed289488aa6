#include "disk_copier.h"

#include <algorithm>
#include <span>

#include "copy_pipeline.h"
#include "nbd_reader.h"
#include "slot_runs.h"

namespace virtsnap::engine {

namespace {

const std::string kAllocation = "base:allocation";
// Dirty runs closer than this are asked about in one allocation request:
// a request costs a round trip, a gap only QEMU's look at its metadata.
constexpr uint64_t kAllocationJoin = 64ull << 20;

// The slots overlapped by [offset, offset + length).
SlotRun slotsOf(uint64_t offset, uint64_t length, uint32_t chunkSize)
{
	return {offset / chunkSize, (offset + length + chunkSize - 1) / chunkSize};
}

// Slots with data (not holes or zeros) within `windows` (whole disk: none).
Result<SlotRuns> dataRuns(NbdReader &reader, uint32_t chunkSize, std::span<const NbdReader::ByteRange> windows)
{
	SlotRuns data;
	auto visit = [&](uint64_t off, uint64_t len, uint32_t flags) {
		if (!(flags & NbdReader::kStateZero)) {
			SlotRun r = slotsOf(off, len, chunkSize);
			data.add(r.first, r.end);
		}
	};
	if (windows.empty())
		VS_TRY(reader.extents(kAllocation, visit));
	else
		VS_TRY(reader.extents(kAllocation, windows, visit));
	return data;
}

// Slots the dirty bitmap marks, over the whole disk. On a connection of
// its own: a block-status request reports every context the connection
// negotiated, and QEMU's base:allocation of a whole 16 TiB qcow2 costs it
// 0.78 s where the bitmap costs 0.08 s.
Result<SlotRuns> dirtyRuns(const hypervisor::DiskExport &exp, uint32_t chunkSize)
{
	VS_ASSIGN(auto reader, NbdReader::open(exp, {exp.dirtyBitmapContext}));
	SlotRuns dirty;
	VS_TRY(reader->extents(exp.dirtyBitmapContext, [&](uint64_t off, uint64_t len, uint32_t flags) {
		if (flags & NbdReader::kStateDirty) {
			SlotRun r = slotsOf(off, len, chunkSize);
			dirty.add(r.first, r.end);
		}
	}));
	return dirty;
}

// The byte windows the allocation of `dirty` is asked in.
std::vector<NbdReader::ByteRange> allocationWindows(const SlotRuns &dirty, uint32_t chunkSize)
{
	std::vector<NbdReader::ByteRange> windows;
	const uint64_t join = kAllocationJoin / chunkSize;
	if (dirty.empty())
		return windows;
	uint64_t first = dirty.runs().front().first, end = first;
	for (const SlotRun &r : dirty.runs()) {
		if (r.first - end > join) {
			windows.push_back({first * chunkSize, (end - first) * chunkSize});
			first = r.first;
		}
		end = r.end;
	}
	windows.push_back({first * chunkSize, (end - first) * chunkSize});
	return windows;
}

// Splits the candidate slots (`wanted` within [0, slots), or all of them)
// into those with data, returned, and holes, set to the zero id in the
// index without a read. The holes are acted on as found, never held: a set
// of them could not be coalesced (slots cleared without a read must be
// holes).
SlotRuns splitHoles(const std::vector<SlotRun> &wanted, const SlotRuns &data, store::SnapshotIndex &index,
		    uint64_t &holeSlots)
{
	SlotRuns read;
	auto d = data.runs().begin();
	const auto dEnd = data.runs().end();
	for (SlotRun w : wanted) {
		w.end = std::min(w.end, index.slots());
		uint64_t at = w.first;
		while (at < w.end) {
			while (d != dEnd && d->end <= at)
				++d;
			uint64_t dataFrom = d == dEnd ? w.end : std::clamp(d->first, at, w.end);
			if (dataFrom > at) {
				index.clear(at, dataFrom);
				holeSlots += dataFrom - at;
				at = dataFrom;
				continue;
			}
			uint64_t dataTo = std::min(d->end, w.end);
			read.add(at, dataTo);
			at = dataTo;
		}
	}
	return read;
}

} // namespace

Result<CopyStats> copyDisk(const hypervisor::DiskExport &exp, store::Store &store, store::ChunkWriter &writer,
			   store::SnapshotIndex &index, const ProgressFn &progress,
			   const std::function<bool()> &cancelled, unsigned workers)
{
	// The bitmap's connection is closed before this one opens: an export
	// may take one client at a time (qemu-nbd's default).
	SlotRuns dirty;
	if (!exp.dirtyBitmapContext.empty()) {
		VS_ASSIGN(dirty, dirtyRuns(exp, index.chunkSize()));
	}
	VS_ASSIGN(auto reader, NbdReader::open(exp, {kAllocation}));
	if (reader->size() != index.volumeSize())
		return fail(errc::kHypervisor, "the export of " + exp.diskId + " has " +
						       std::to_string(reader->size()) + " bytes, expected " +
						       std::to_string(index.volumeSize()));

	// Holes and zero extents (base:allocation) cost neither a read nor a
	// hash: their slots are the zero id at once. Only runs are held, so
	// a clean 16 TiB disk costs what a clean 2 GiB one does in memory.
	const uint32_t chunkSize = index.chunkSize();
	CopyStats stats;
	SlotRuns wanted;
	if (exp.dirtyBitmapContext.empty()) {
		// Every slot; a fresh index is all holes already (clear skips its
		// pages), one continued without a bitmap is not.
		VS_ASSIGN(SlotRuns data, dataRuns(*reader, chunkSize, {}));
		wanted = splitHoles({SlotRun{0, index.slots()}}, data, index, stats.zeroChunks);
	} else {
		// The change first, then the allocation of only what changed:
		// the cost follows the change, not the disk.
		auto windows = allocationWindows(dirty, chunkSize);
		if (!windows.empty()) {
			VS_ASSIGN(SlotRuns data, dataRuns(*reader, chunkSize, windows));
			wanted = splitHoles(dirty.runs(), data, index, stats.zeroChunks);
		}
		dirty = SlotRuns(); // freed before the copy
	}

	PipelineOptions options;
	options.workers = workers;
	std::vector<std::unique_ptr<store::ChunkCodec>> codecs;
	for (unsigned w = 0; w < pipelineWorkers(options); w++) {
		// The index says which key domain the disk's snapshot is under.
		VS_ASSIGN(auto codec, store.newCodec(index.domain()));
		codecs.push_back(std::move(codec));
	}
	options.workers = unsigned(codecs.size());
	store::WriteTally tally;
	auto put = [&](unsigned worker, std::span<const uint8_t> data) {
		return writer.put(*codecs[worker], data, store::ChunkType::Data, &tally);
	};
	VS_ASSIGN(auto copied, copySlots(*reader, wanted, index, put, progress, cancelled, options));
	stats.bytesRead = copied.bytesRead;
	stats.zeroChunks += copied.zeroChunks;
	stats.chunksNew = tally.chunksNew;
	stats.chunksReused = tally.chunksReused;
	stats.bytesAdded = tally.bytesAdded;
	return stats;
}

} // namespace virtsnap::engine
