// Chunk ids made up from a number, uniform like real ones (HMAC output):
// tests and benchmarks that need millions of ids recompute them rather
// than keep them. Different `salt`s never meet, nor meet real ids.
#pragma once

#include <cstdint>
#include <cstring>

#include "store/chunk_id.h"

namespace virtsnap::test {

inline uint64_t splitmix64(uint64_t &x)
{
	uint64_t z = (x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

inline store::ChunkId syntheticChunkId(uint64_t n, uint64_t salt = 0)
{
	store::ChunkId id;
	uint64_t state = n * 4 + salt;
	for (size_t i = 0; i < id.size(); i += 8) {
		uint64_t w = splitmix64(state);
		std::memcpy(id.data() + i, &w, 8);
	}
	return id;
}

} // namespace virtsnap::test
