#include "disk_copier.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "core/cancel.h"
#include "nbd_reader.h"

namespace virtsnap::engine {

namespace {

// Reads go in runs of up to this many bytes of consecutive slots.
constexpr uint64_t kMaxRun = 4ull << 20;
// Runs waiting for a worker; bounds memory to about kQueueDepth * kMaxRun.
constexpr size_t kQueueDepth = 8;

struct Run {
	uint64_t firstSlot;
	uint64_t slots;
	Bytes data;
};


class RunQueue
{
public:
	void push(Run run)
	{
		std::unique_lock lock(mutex_);
		notFull_.wait(lock, [&] { return runs_.size() < kQueueDepth || stopped_; });
		runs_.push_back(std::move(run));
		notEmpty_.notify_one();
	}
	std::optional<Run> pop()
	{
		std::unique_lock lock(mutex_);
		notEmpty_.wait(lock, [&] { return !runs_.empty() || closed_ || stopped_; });
		if (runs_.empty() || stopped_)
			return std::nullopt;
		Run r = std::move(runs_.front());
		runs_.pop_front();
		notFull_.notify_one();
		return r;
	}
	void close()
	{
		std::lock_guard lock(mutex_);
		closed_ = true;
		notEmpty_.notify_all();
	}
	void stop()
	{
		std::lock_guard lock(mutex_);
		stopped_ = true;
		notEmpty_.notify_all();
		notFull_.notify_all();
	}

private:
	std::mutex mutex_;
	std::condition_variable notEmpty_, notFull_;
	std::deque<Run> runs_;
	bool closed_ = false;
	bool stopped_ = false;
};

// Marks the slots overlapped by [offset, offset + length).
void markSlots(std::vector<bool> &slots, uint32_t chunkSize, uint64_t offset, uint64_t length)
{
	if (length == 0)
		return;
	uint64_t first = offset / chunkSize;
	uint64_t last = std::min<uint64_t>((offset + length - 1) / chunkSize, slots.size() - 1);
	for (uint64_t s = first; s <= last && s < slots.size(); s++)
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
	auto reader = NbdReader::open(exp, contexts);
	if (!reader)
		return std::unexpected(reader.error());
	if ((*reader)->size() != index.volumeSize())
		return fail(errc::kHypervisor, "the export of " + exp.diskId + " has " +
						       std::to_string((*reader)->size()) + " bytes, expected " +
						       std::to_string(index.volumeSize()));

	const uint32_t chunkSize = index.chunkSize();
	std::vector<bool> hasData(index.slots(), false);
	VS_TRY((*reader)->extents(allocation, [&](uint64_t off, uint64_t len, uint32_t flags) {
		if (!(flags & NbdReader::kStateZero))
			markSlots(hasData, chunkSize, off, len);
	}));
	std::vector<bool> changed(index.slots(), exp.dirtyBitmapContext.empty());
	if (!exp.dirtyBitmapContext.empty())
		VS_TRY((*reader)->extents(exp.dirtyBitmapContext, [&](uint64_t off, uint64_t len, uint32_t flags) {
			if (flags & NbdReader::kStateDirty)
				markSlots(changed, chunkSize, off, len);
		}));

	CopyStats stats;
	uint64_t totalBytes = 0;
	for (uint64_t s = 0; s < index.slots(); s++) {
		if (!changed[s])
			continue;
		if (!hasData[s]) {
			index.set(s, store::kZeroChunk);
			stats.zeroChunks++;
			continue;
		}
		totalBytes += index.slotLength(s);
	}

	RunQueue queue;
	std::mutex errorMutex;
	std::optional<Error> firstError;
	std::atomic<uint64_t> doneBytes{0}, zeroChunks{0};
	auto setError = [&](Error e) {
		std::lock_guard lock(errorMutex);
		if (!firstError)
			firstError = std::move(e);
		queue.stop();
	};

	unsigned workerCount = std::max(1u, std::thread::hardware_concurrency());
	std::vector<std::thread> workers;
	for (unsigned w = 0; w < workerCount; w++) {
		workers.emplace_back([&] {
			auto codec = store.newCodec();
			while (auto run = queue.pop()) {
				uint64_t pos = 0;
				for (uint64_t i = 0; i < run->slots; i++) {
					uint64_t slot = run->firstSlot + i;
					std::span<const uint8_t> data(run->data.data() + pos, index.slotLength(slot));
					pos += data.size();
					if (isAllZero(data)) {
						index.set(slot, store::kZeroChunk);
						zeroChunks++;
						continue;
					}
					auto id = writer.put(*codec, data, store::ChunkType::Data);
					if (!id) {
						setError(id.error());
						return;
					}
					index.set(slot, *id);
				}
				uint64_t done = doneBytes += run->data.size();
				if (progress)
					progress(done, totalBytes);
			}
		});
	}

	// Reader: consecutive slots with data form runs, read in one request.
	for (uint64_t s = 0; s < index.slots();) {
		if (!changed[s] || !hasData[s]) {
			s++;
			continue;
		}
		if (cancelRequested() || (cancelled && cancelled())) {
			setError(Error{errc::kIncorrectState, cancelRequested() ? "interrupted by signal " +
											 std::to_string(cancelSignal())
										: "interrupted"});
			break;
		}
		uint64_t first = s, bytes = 0;
		while (s < index.slots() && changed[s] && hasData[s] && bytes + index.slotLength(s) <= kMaxRun)
			bytes += index.slotLength(s++);
		Run run{first, s - first, Bytes(bytes)};
		if (auto r = (*reader)->read(run.data, first * chunkSize); !r) {
			setError(r.error());
			break;
		}
		stats.bytesRead += bytes;
		{
			std::lock_guard lock(errorMutex);
			if (firstError)
				break;
		}
		queue.push(std::move(run));
	}
	queue.close();
	for (std::thread &t : workers)
		t.join();
	if (firstError)
		return std::unexpected(*firstError);
	stats.zeroChunks += zeroChunks;
	return stats;
}

} // namespace virtsnap::engine
