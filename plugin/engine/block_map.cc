#include "block_map.h"

#include <algorithm>

namespace virtsnap::engine {

uint64_t blockCount(uint64_t volumeSize)
{
	return (volumeSize + kBlockSize - 1) / kBlockSize;
}

SlotRange slotsOfBlock(uint64_t volumeSize, uint32_t chunkSize, uint64_t block)
{
	if (chunkSize == 0 || block >= blockCount(volumeSize))
		return {};
	uint64_t begin = block * kBlockSize;
	uint64_t end = std::min(volumeSize, begin + kBlockSize);
	return {begin / chunkSize, (end + chunkSize - 1) / chunkSize};
}

std::optional<crypto::Digest> blockIdentity(const store::SnapshotIndex &index, uint64_t block)
{
	SlotRange slots = slotsOfBlock(index.volumeSize(), index.chunkSize(), block);
	bool data = false;
	for (uint64_t s = slots.first; s < slots.end && !data; s++)
		data = !store::isZeroId(index.at(s));
	if (!data)
		return std::nullopt;
	// The ids alone: identities are only compared at one block index of
	// one store (whose chunk size is fixed), and a token binds the index.
	Bytes text;
	for (uint64_t s = slots.first; s < slots.end; s++)
		text.insert(text.end(), index.at(s).begin(), index.at(s).end());
	return crypto::sha256(text);
}

} // namespace virtsnap::engine
