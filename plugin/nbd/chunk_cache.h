// The chunks an NBD export decoded last, by id: a client reading one chunk
// in small pieces (4 KiB at a time, as a guest or qemu-img does) fetches,
// authenticates and decompresses it once. Bounded in bytes; the least
// recently used chunk goes first. Shared by nbdkit's threads.
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "core/bytes.h"
#include "store/chunk_id.h"

namespace virtsnap::nbd {

class ChunkCache
{
public:
	explicit ChunkCache(size_t capacityBytes) : capacity_(capacityBytes) {}

	// The chunk, or null when it is not cached.
	std::shared_ptr<const Bytes> find(const store::ChunkId &id);
	void insert(const store::ChunkId &id, std::shared_ptr<const Bytes> chunk);

private:
	struct Entry {
		store::ChunkId id;
		std::shared_ptr<const Bytes> chunk;
	};

	const size_t capacity_;
	std::mutex mutex_;
	size_t bytes_ = 0;
	std::list<Entry> lru_; // most recent first
	std::unordered_map<store::ChunkId, std::list<Entry>::iterator, store::ChunkIdHash> byId_;
};

} // namespace virtsnap::nbd
