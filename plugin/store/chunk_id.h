// Chunk ids: HMAC-SHA256 of the plaintext under the domain's id key. The id
// of all zeros stands for an all-zero chunk, which is never stored.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "core/bytes.h"

namespace virtsnap::store {

using ChunkId = std::array<uint8_t, 32>;

inline constexpr ChunkId kZeroChunk{};

inline bool isZeroId(const ChunkId &id)
{
	return id == kZeroChunk;
}

inline std::string idHex(const ChunkId &id)
{
	return toHex(id);
}

struct ChunkIdHash {
	// The id is already a keyed hash: any 8 of its bytes are uniform.
	size_t operator()(const ChunkId &id) const
	{
		size_t h;
		std::memcpy(&h, id.data(), sizeof(h));
		return h;
	}
};

// The store's geometry (FORMAT.md): chunks are a power of two from 4 KiB to
// 16 MiB, and index pages hold 1024 ids.
inline constexpr uint32_t kMinChunkSize = 4096;
inline constexpr uint32_t kMaxChunkSize = 16u << 20;
inline constexpr uint32_t kIndexPageEntries = 1024;

enum class ChunkType : uint8_t {
	Data = 1,
	IndexPage = 2,
};

} // namespace virtsnap::store
