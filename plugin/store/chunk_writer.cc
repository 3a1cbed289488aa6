#include "chunk_writer.h"

namespace virtsnap::store {

Result<ChunkId> ChunkWriter::put(ChunkCodec &codec, std::span<const uint8_t> data, ChunkType type,
				  WriteTally *tally)
{
	ChunkId id = codec.idOf(data);
	auto reused = [&] {
		chunksReused_++;
		if (tally)
			tally->chunksReused++;
		return id;
	};
	if (store_.contains(id))
		return reused();
	{
		std::lock_guard lock(mutex_);
		if (error_)
			return errorLocked();
		// Put in this job already (maybe by another thread right now), or
		// its pack became visible since the check above.
		if (pending_.count(id) || store_.contains(id))
			return reused();
		pending_.insert(id);
	}
	// Encode outside the lock: this is where the CPU goes.
	Blob blob{id, type, uint32_t(data.size()), {}};
	blob.bytes.reserve(data.size() + kBlobOverhead);
	auto encoded = codec.encode(id, type, data, blob.bytes);

	std::unique_lock lock(mutex_);
	if (!encoded) {
		// The job fails: other threads that took this id for pending
		// return ids of a snapshot that will not be committed.
		failLocked(encoded.error());
		return std::unexpected(encoded.error());
	}
	stateCv_.wait(lock, [&] { return queueBytes_ + blob.bytes.size() <= kQueueBytes || queue_.empty() || error_; });
	if (error_)
		return errorLocked();
	queueBytes_ += blob.bytes.size();
	bytesAdded_ += blob.bytes.size();
	chunksNew_++;
	if (tally) {
		tally->bytesAdded += blob.bytes.size();
		tally->chunksNew++;
	}
	queue_.push_back(std::move(blob));
	startThreadsLocked();
	if (queueBytes_ >= kAppendBatchBytes)
		appenderCv_.notify_one();
	return id;
}

void ChunkWriter::startThreadsLocked()
{
	if (!appender_.joinable())
		appender_ = std::thread([this] { appenderLoop(); });
	if (!finisher_.joinable())
		finisher_ = std::thread([this] { finisherLoop(); });
}

void ChunkWriter::failLocked(const Error &e)
{
	if (!error_)
		error_ = e;
	stateCv_.notify_all();
	appenderCv_.notify_all();
}

void ChunkWriter::appenderLoop()
{
	std::unique_lock lock(mutex_);
	for (;;) {
		appenderCv_.wait(lock, [&] { return queueBytes_ >= kAppendBatchBytes || flushRequested_ || stopping_; });
		if (stopping_)
			return;
		if (!queue_.empty()) {
			std::deque<Blob> batch;
			batch.swap(queue_);
			queueBytes_ = 0;
			stateCv_.notify_all();
			// After a failure the queue is only emptied.
			if (error_)
				continue;
			lock.unlock();
			auto r = append(batch);
			batch.clear();
			lock.lock();
			if (!r)
				failLocked(r.error());
			continue;
		}
		// Flush (commit): the queue is empty, so the pack holds every
		// blob; it goes to the finisher like a full one.
		if (pack_ && !error_) {
			lock.unlock();
			auto r = handOff();
			lock.lock();
			if (!r)
				failLocked(r.error());
		}
		flushRequested_ = false;
		stateCv_.notify_all();
	}
}

Result<void> ChunkWriter::append(std::deque<Blob> &blobs)
{
	for (const Blob &b : blobs) {
		if (!pack_) {
			VS_ASSIGN(auto pack, PackWriter::create(store_.backend()));
			pack_.emplace(std::move(pack));
		}
		VS_TRY(pack_->append({b.id, b.type, b.bytes[5], b.rawLength, b.bytes}));
		// Up to the blob that takes the pack past its target size.
		if (pack_->size() >= kPackTargetSize)
			VS_TRY(handOff());
	}
	return {};
}

Result<void> ChunkWriter::handOff()
{
	std::unique_lock lock(mutex_);
	// The previous pack must be durable first: this is the backpressure
	// that keeps a slow disk from collecting packs.
	stateCv_.wait(lock, [&] { return !finishing_ || stopping_ || error_; });
	if (error_)
		return errorLocked();
	if (stopping_)
		return {};
	finishing_.emplace(std::move(*pack_));
	pack_.reset();
	finisherCv_.notify_one();
	return {};
}

void ChunkWriter::finisherLoop()
{
	std::unique_lock lock(mutex_);
	for (;;) {
		// A pack handed over is finished even when the writer is going
		// away: it is complete, and gc knows what to do with it.
		finisherCv_.wait(lock, [&] { return finishing_.has_value() || finisherStopping_; });
		if (!finishing_)
			return;
		lock.unlock();
		auto index = finishing_->finish(store_.domain());
		if (index) {
			std::unique_lock storeLock(store_.mutex_);
			if (auto added = store_.addPackLocked(*index); !added)
				index = std::unexpected(added.error());
		}
		lock.lock();
		if (index) {
			// In the store's map now: found there from here on.
			for (const PackEntry &e : index->entries)
				pending_.erase(e.id);
		} else {
			failLocked(index.error());
		}
		// Reset only now: an empty slot is what tells waiters the pack is
		// durable and visible.
		finishing_.reset();
		stateCv_.notify_all();
	}
}

ChunkWriter::~ChunkWriter()
{
	{
		std::lock_guard lock(mutex_);
		stopping_ = true;
		appenderCv_.notify_all();
		stateCv_.notify_all();
	}
	if (appender_.joinable())
		appender_.join();
	{
		std::lock_guard lock(mutex_);
		finisherStopping_ = true;
		finisherCv_.notify_all();
	}
	if (finisher_.joinable())
		finisher_.join();
}

Result<void> ChunkWriter::commit()
{
	std::unique_lock lock(mutex_);
	if (!appender_.joinable())
		return error_ ? errorLocked() : Result<void>{};
	flushRequested_ = true;
	appenderCv_.notify_one();
	stateCv_.wait(lock, [&] { return (!flushRequested_ && !finishing_) || (error_ && !finishing_); });
	if (error_)
		return errorLocked();
	pending_.clear();
	return {};
}

} // namespace virtsnap::store
