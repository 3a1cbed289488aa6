#include "copy_pipeline.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "core/cancel.h"
#include "core/unique_fd.h"

namespace virtsnap::engine {

namespace {

// How long the reader sleeps at most between checks for cancellation.
constexpr int kPollMs = 100;
// After a failure, how long in-flight reads may take to finish before the
// copy gives up on them (see drain()).
constexpr auto kDrainLimit = std::chrono::seconds(10);

struct Job {
	uint64_t firstSlot;
	uint32_t slots;
	uint32_t length;
	unsigned buffer;
};

// Everything the reader and the workers share.
class Pipeline
{
public:
	Pipeline(size_t buffers, uint32_t bufferBytes)
		: bufferBytes_(bufferBytes),
		  // Not zeroed: every byte a worker looks at was read into it first.
		  memory_(std::make_unique_for_overwrite<uint8_t[]>(buffers * size_t(bufferBytes))),
		  wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
	{
		for (size_t i = buffers; i-- > 0;)
			free_.push_back(unsigned(i));
	}

	bool ok() const { return wake_.isValid(); }
	int wakeFd() const { return wake_.get(); }
	std::span<uint8_t> buffer(unsigned b, uint32_t length)
	{
		return {memory_.get() + size_t(b) * bufferBytes_, length};
	}
	// The pool must outlive reads that never finished (see drain()).
	void abandonMemory() { (void)memory_.release(); }

	std::optional<unsigned> takeBuffer()
	{
		std::lock_guard lock(poolMutex_);
		if (free_.empty())
			return std::nullopt;
		unsigned b = free_.back();
		free_.pop_back();
		return b;
	}
	void giveBuffer(unsigned b)
	{
		{
			std::lock_guard lock(poolMutex_);
			free_.push_back(b);
		}
		wakeReader();
	}

	void push(Job job)
	{
		std::lock_guard lock(queueMutex_);
		jobs_.push_back(job);
		queueCv_.notify_one();
	}
	// Blocks until a job comes or the queue is closed and empty.
	std::optional<Job> pop()
	{
		std::unique_lock lock(queueMutex_);
		queueCv_.wait(lock, [&] { return !jobs_.empty() || closed_; });
		if (jobs_.empty())
			return std::nullopt;
		Job j = jobs_.front();
		jobs_.pop_front();
		return j;
	}
	void close()
	{
		std::lock_guard lock(queueMutex_);
		closed_ = true;
		queueCv_.notify_all();
	}

	void setError(Error e)
	{
		{
			std::lock_guard lock(errorMutex_);
			if (!error_)
				error_ = std::move(e);
		}
		failed_ = true;
		wakeReader();
	}
	bool failed() const { return failed_; }
	std::optional<Error> error()
	{
		std::lock_guard lock(errorMutex_);
		return error_;
	}

private:
	void wakeReader()
	{
		uint64_t one = 1;
		(void)!::write(wake_.get(), &one, sizeof(one));
	}

	const uint32_t bufferBytes_;
	std::unique_ptr<uint8_t[]> memory_;
	UniqueFd wake_;

	std::mutex poolMutex_;
	std::vector<unsigned> free_;

	std::mutex queueMutex_;
	std::condition_variable queueCv_;
	std::deque<Job> jobs_;
	bool closed_ = false;

	std::mutex errorMutex_;
	std::optional<Error> error_;
	std::atomic<bool> failed_{false};
};

} // namespace

unsigned pipelineWorkers(const PipelineOptions &options)
{
	return options.workers ? options.workers : std::max(1u, std::thread::hardware_concurrency());
}

namespace {

// Reads are made one at a time from a cursor over the runs, never listed,
// so a huge disk costs nothing here either.
class RequestCursor
{
public:
	RequestCursor(const SlotRuns &wanted, const store::SnapshotIndex &index, uint32_t slotsPerRequest)
		: runs_(wanted.runs()), index_(index), slotsPerRequest_(slotsPerRequest)
	{
		if (!runs_.empty())
			cursor_ = runs_.front().first;
	}

	std::optional<Job> next()
	{
		while (run_ < runs_.size() && cursor_ >= std::min(runs_[run_].end, index_.slots())) {
			if (++run_ < runs_.size())
				cursor_ = std::max(cursor_, runs_[run_].first);
		}
		if (run_ >= runs_.size())
			return std::nullopt;
		const uint64_t end = std::min(runs_[run_].end, index_.slots());
		Job j{cursor_, 0, 0, 0};
		while (cursor_ < end && j.slots < slotsPerRequest_) {
			j.length += index_.slotLength(cursor_);
			j.slots++;
			cursor_++;
		}
		return j;
	}

private:
	const std::vector<SlotRun> &runs_;
	const store::SnapshotIndex &index_;
	const uint32_t slotsPerRequest_;
	size_t run_ = 0;
	uint64_t cursor_ = 0;
};

// The bytes of the slots of `wanted` within the index: from the runs, not
// slot by slot.
uint64_t wantedBytes(const SlotRuns &wanted, const store::SnapshotIndex &index)
{
	uint64_t total = 0;
	const uint64_t chunkSize = index.chunkSize();
	for (const SlotRun &r : wanted.runs()) {
		uint64_t end = std::min(r.end, index.slots());
		if (r.first < end)
			total += std::min(end * chunkSize, index.volumeSize()) - r.first * chunkSize;
	}
	return total;
}

// What the workers share besides the pipeline: they store every chunk of a
// job that is not all zeros and count what is done.
struct ChunkWork {
	Pipeline &pipe;
	store::SnapshotIndex &index;
	const PutChunk &put;
	const ProgressFn &progress;
	const uint64_t total;
	std::atomic<uint64_t> done{0}, zeroChunks{0};

	void run(unsigned worker)
	{
		const uint32_t chunkSize = index.chunkSize();
		while (auto job = pipe.pop()) {
			std::span<uint8_t> data = pipe.buffer(job->buffer, job->length);
			// After a failure the queue is only emptied: nothing more is
			// stored, and the buffers go back so the reader can drain.
			for (uint32_t i = 0; i < job->slots && !pipe.failed(); i++) {
				uint64_t slot = job->firstSlot + i;
				auto chunk = data.subspan(uint64_t(i) * chunkSize, index.slotLength(slot));
				if (isAllZero(chunk)) {
					index.set(slot, store::kZeroChunk);
					zeroChunks++;
					continue;
				}
				auto id = put(worker, chunk);
				if (!id) {
					pipe.setError(std::move(id.error()));
					break;
				}
				index.set(slot, *id);
			}
			pipe.giveBuffer(job->buffer);
			if (!pipe.failed()) {
				uint64_t d = done += job->length;
				if (progress)
					progress(d, total);
			}
		}
	}
};

// The reader, on the calling thread: keeps up to `maxInFlight` reads going
// until every wanted slot is read, something fails, or the copy is
// cancelled.
void readAll(ReadSource &source, Pipeline &pipe, RequestCursor &cursor, unsigned maxInFlight, uint32_t chunkSize,
	     PipelineStats &stats, const std::function<bool()> &cancelled)
{
	std::optional<Job> pending = cursor.next();
	while (!pipe.failed()) {
		if (cancelRequested() || (cancelled && cancelled())) {
			pipe.setError(Error{errc::kIncorrectState, cancelRequested() ? "interrupted by signal " +
											 std::to_string(cancelSignal())
										: "interrupted"});
			return;
		}
		while (pending && source.inFlight() < maxInFlight && !pipe.failed()) {
			auto b = pipe.takeBuffer();
			if (!b)
				break;
			Job job = *pending;
			job.buffer = *b;
			auto started = source.startRead(pipe.buffer(job.buffer, job.length), job.firstSlot * chunkSize,
							[&pipe, &stats, job](Result<void> r) {
								if (!r) {
									pipe.setError(std::move(r.error()));
									pipe.giveBuffer(job.buffer);
									return;
								}
								stats.bytesRead += job.length;
								pipe.push(job);
							});
			if (!started) {
				pipe.giveBuffer(job.buffer);
				pipe.setError(std::move(started.error()));
				return;
			}
			stats.peakInFlight = std::max(stats.peakInFlight, source.inFlight());
			pending = cursor.next();
		}
		if ((!pending && source.inFlight() == 0) || pipe.failed())
			return;
		if (auto r = source.poll(pipe.wakeFd(), kPollMs); !r)
			pipe.setError(std::move(r.error()));
	}
}

// Reads still in flight write into the pool: wait for them before the pool
// goes. Completions after a failure only return their buffer.
void drain(ReadSource &source, Pipeline &pipe)
{
	auto limit = std::chrono::steady_clock::now() + kDrainLimit;
	while (source.inFlight() > 0 && std::chrono::steady_clock::now() < limit)
		if (!source.poll(-1, kPollMs))
			break;
	if (source.inFlight() > 0) {
		// The source neither finished nor failed its reads (a hung
		// server).
		pipe.setError(Error{errc::kHypervisor, "reads did not finish after the copy stopped"});
		source.abandon();
	}
	// A source that could not abandon them may still write into the pool
	// until the caller closes it: leaking the pool is then the only safe
	// choice.
	if (source.inFlight() > 0)
		pipe.abandonMemory();
}

} // namespace

Result<PipelineStats> copySlots(ReadSource &source, const SlotRuns &wanted, store::SnapshotIndex &index,
				const PutChunk &put, const ProgressFn &progress,
				const std::function<bool()> &cancelled, const PipelineOptions &options)
{
	const uint32_t chunkSize = index.chunkSize();
	// Whole chunks per read, at least one.
	const uint32_t slotsPerRequest = std::max<uint32_t>(1, options.requestBytes / chunkSize);
	const uint32_t requestBytes = slotsPerRequest * chunkSize;
	const unsigned workerCount = pipelineWorkers(options);
	const unsigned maxInFlight = std::max(1u, options.maxInFlight);
	const unsigned bufferCount = options.buffers ? std::max(options.buffers, 1u) : maxInFlight + 2 * workerCount;

	const uint64_t total = wantedBytes(wanted, index);

	PipelineStats stats;
	stats.bufferBytes = uint64_t(bufferCount) * requestBytes;
	if (total == 0)
		return stats;

	Pipeline pipe(bufferCount, requestBytes);
	if (!pipe.ok())
		return failErrno("eventfd", errno);
	ChunkWork work{pipe, index, put, progress, total};
	std::vector<std::thread> workers;
	for (unsigned w = 0; w < workerCount; w++)
		workers.emplace_back([&work, w] { work.run(w); });

	RequestCursor cursor(wanted, index, slotsPerRequest);
	readAll(source, pipe, cursor, maxInFlight, chunkSize, stats, cancelled);
	drain(source, pipe);
	pipe.close();
	for (std::thread &t : workers)
		t.join();
	if (auto e = pipe.error())
		return std::unexpected(*e);
	stats.zeroChunks = work.zeroChunks;
	return stats;
}

} // namespace virtsnap::engine
