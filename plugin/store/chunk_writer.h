// Writes the new chunks of one job into packs (FORMAT.md, "Write ordering").
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

#include "store.h"
#include "write_tally.h"

namespace virtsnap::store {

// Writes the new chunks of one job into packs. put() may be called from
// several threads, each with its own codec. A pack becomes visible when it
// is full (about 32 MiB) and durable, or at commit(); dropped uncommitted,
// the writer drops its unfinished pack, and finished ones wait for gc like
// any chunk no manifest names.
//
// put() only hashes, compresses and encrypts, on the caller's thread; the
// blobs go through a short queue (at most kQueueBytes) to one appender
// thread that writes the pack sequentially, a batch at a time, and a full
// pack goes to a finisher thread that makes it durable (the pack object,
// then its index) while the appender fills the next. Callers never wait for the disk unless it is
// slower than they are: then a full queue, or a pack still being finished
// when the next one fills, slows put() down instead of piling up.
// Errors of those threads come back from a later put() or from commit().
//
// A chunk is stored once per job however many threads put it at the same
// moment: the first to mark its id pending stores it, the others find it
// pending and count it reused.
class ChunkWriter
{
public:
	static constexpr size_t kQueueBytes = 8u << 20;
	// The appender is woken when this much waits (or at commit), and
	// appends it all at once: a wake-up per blob cost 8% of a full
	// snapshot's CPU in scheduling alone.
	static constexpr size_t kAppendBatchBytes = 1u << 20;

	explicit ChunkWriter(Store &store) : store_(store) {}
	// Finishes a pack already handed to the finisher; drops the queue and
	// the unfinished pack.
	~ChunkWriter();
	ChunkWriter(const ChunkWriter &) = delete;
	ChunkWriter &operator=(const ChunkWriter &) = delete;

	// `tally` (may be null) counts this put besides the writer's totals.
	Result<ChunkId> put(ChunkCodec &codec, std::span<const uint8_t> data, ChunkType type,
			    WriteTally *tally = nullptr);
	Result<void> commit();

	uint64_t bytesAdded() const { return bytesAdded_; }
	uint64_t chunksNew() const { return chunksNew_; }
	uint64_t chunksReused() const { return chunksReused_; }

private:
	struct Blob {
		ChunkId id;
		ChunkType type;
		uint32_t rawLength;
		Bytes bytes;
	};

	void appenderLoop();
	void finisherLoop();
	// On the appender thread, without mutex_.
	Result<void> append(std::deque<Blob> &blobs);
	Result<void> handOff();
	// Callers hold mutex_.
	void failLocked(const Error &e);
	std::unexpected<Error> errorLocked() const { return std::unexpected(*error_); }
	void startThreadsLocked();

	Store &store_;
	std::atomic<uint64_t> bytesAdded_{0};
	std::atomic<uint64_t> chunksNew_{0};
	std::atomic<uint64_t> chunksReused_{0};

	std::mutex mutex_;
	std::condition_variable appenderCv_; // the appender: blobs, a flush, or stop
	std::condition_variable finisherCv_; // the finisher: a pack, or stop
	std::condition_variable stateCv_;    // put() and commit(): room, flushed, finished, failed
	// Ids put in this job and not yet in the store's map (queued, in the
	// pack being filled, at the finisher): a job's memory does not grow
	// with the disk it copies.
	std::unordered_set<ChunkId, ChunkIdHash> pending_;
	std::deque<Blob> queue_;
	size_t queueBytes_ = 0;
	bool flushRequested_ = false;
	bool stopping_ = false;
	bool finisherStopping_ = false;
	std::optional<Error> error_;
	// Only the appender touches pack_; only the finisher touches
	// *finishing_ while it is set (it is set and reset under mutex_).
	std::optional<PackWriter> pack_;
	std::optional<PackWriter> finishing_;
	std::thread appender_;
	std::thread finisher_;
};

} // namespace virtsnap::store
