// The EBS direct APIs' 512 KiB blocks over a snapshot index's chunk grid,
// whatever the store's chunk size: which slots a block covers, whether it
// holds data, and what identifies its content, all from the index alone.
#pragma once

#include <cstdint>
#include <optional>

#include "crypto/crypto.h"
#include "store/snapshot_index.h"

namespace virtsnap::engine {

// EBS's block size: tools written against EBS assume it.
inline constexpr uint32_t kBlockSize = 512 * 1024;

// The number of blocks of a volume; a last partial block counts (it reads
// padded with zeros).
uint64_t blockCount(uint64_t volumeSize);

// The grid slots that overlap block `block`: [first, end); empty past the
// end of the volume.
struct SlotRange {
	uint64_t first = 0;
	uint64_t end = 0;
};
SlotRange slotsOfBlock(uint64_t volumeSize, uint32_t chunkSize, uint64_t block);

// What block `block` of `index` holds, as a digest of the chunk ids over
// it: equal digests at one block index of two snapshots of one store mean
// equal bytes (chunk ids are keyed hashes of the chunks' bytes). nullopt when every chunk over it is zero (or the block
// is past the volume's end): the block reads as zeros and holds no data.
// With chunks larger than a block, a block holds data when its chunk does,
// even if its own half of that chunk is zeros.
std::optional<crypto::Digest> blockIdentity(const store::SnapshotIndex &index, uint64_t block);

} // namespace virtsnap::engine
