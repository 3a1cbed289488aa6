// The read side of the EBS direct APIs over the store: list a snapshot's
// blocks that hold data, list the blocks that differ between two snapshots
// of one volume, and read one block, each answered through the store's
// backend (manifests, index pages, chunks), never a local path. Listings
// read only the snapshot indexes; only get reads data.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "block_map.h"
#include "block_tokens.h"
#include "store/store.h"

namespace virtsnap::engine {

// Where a listing starts and how much it returns.
struct BlockPage {
	uint64_t start = 0;        // the first block index to look at
	uint32_t maxResults = 10000; // EBS's range: 100 to 10000
};

// A listing's NextToken: where the next page starts. Opaque to callers;
// a token that is not one gives InvalidParameterValue.
std::string blockCursor(uint64_t nextBlock);
Result<uint64_t> parseBlockCursor(const std::string &token);

struct ListedBlock {
	uint64_t index = 0;
	std::string token;
};

struct BlockList {
	std::vector<ListedBlock> blocks;
	uint64_t volumeSize = 0; // bytes
	TimePoint expiry;        // of every token of the page
	std::optional<uint64_t> next; // more remain from this block on
};

struct ChangedBlock {
	uint64_t index = 0;
	std::string firstToken;  // "" where the first snapshot holds zeros (or there is none)
	std::string secondToken; // "" where the second holds zeros
};

struct ChangedBlockList {
	std::vector<ChangedBlock> blocks;
	uint64_t volumeSize = 0; // of the second snapshot
	TimePoint expiry;
	std::optional<uint64_t> next;
};

// The blocks of the snapshot that hold data, in index order, from
// page.start. A start at or past the last block is InvalidParameterValue.
Result<BlockList> listSnapshotBlocks(store::Store &store, const std::string &snapshotId, const BlockPage &page,
				     TimePoint now);

// The blocks whose content differs between `first` and `second`, which must
// be snapshots of one volume (either older); `first` "" lists every block
// of `second` that holds data.
Result<ChangedBlockList> listChangedBlocks(store::Store &store, const std::string &first, const std::string &second,
					   const BlockPage &page, TimePoint now);

// Block `block` of the snapshot, kBlockSize bytes (a last partial block
// padded with zeros), once `token` checks out for it.
Result<Bytes> getSnapshotBlock(store::Store &store, const std::string &snapshotId, uint64_t block,
			       const std::string &token, TimePoint now);

} // namespace virtsnap::engine
