// What one writer's puts cost on behalf of one snapshot: its own share when
// several snapshots go through one writer at once (a set's disks copied
// side by side), where the writer's totals are everyone's.
#pragma once

#include <atomic>
#include <cstdint>

namespace virtsnap::store {

struct WriteTally {
	std::atomic<uint64_t> bytesAdded{0}; // blob bytes of the chunks this tally's puts stored
	std::atomic<uint64_t> chunksNew{0};
	std::atomic<uint64_t> chunksReused{0}; // in the store, or put in this job already (by anyone)
};

} // namespace virtsnap::store
