#include "chunk_cache.h"

namespace virtsnap::nbd {

std::shared_ptr<const Bytes> ChunkCache::find(const store::ChunkId &id)
{
	std::lock_guard lock(mutex_);
	auto it = byId_.find(id);
	if (it == byId_.end())
		return nullptr;
	lru_.splice(lru_.begin(), lru_, it->second);
	return it->second->chunk;
}

void ChunkCache::insert(const store::ChunkId &id, std::shared_ptr<const Bytes> chunk)
{
	std::lock_guard lock(mutex_);
	if (byId_.count(id))
		return; // another thread decoded it too
	bytes_ += chunk->size();
	lru_.push_front(Entry{id, std::move(chunk)});
	byId_[id] = lru_.begin();
	// The newest stays even when it alone exceeds the bound.
	while (bytes_ > capacity_ && lru_.size() > 1) {
		bytes_ -= lru_.back().chunk->size();
		byId_.erase(lru_.back().id);
		lru_.pop_back();
	}
}

} // namespace virtsnap::nbd
