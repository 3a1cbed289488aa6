#include "block_api.h"

#include <algorithm>
#include <cstring>

#include "core/ids.h"

namespace virtsnap::engine {

namespace {

constexpr std::string_view kCursorPrefix = "virtsnap-blocks-from:";

struct Loaded {
	store::Manifest manifest;
	store::SnapshotIndex index;
};

Result<Loaded> loadSnapshot(store::Store &store, const std::string &id)
{
	VS_ASSIGN(store::Manifest m, store.getManifest(id));
	VS_ASSIGN(auto codec, store.codecOf(m));
	VS_ASSIGN(store::SnapshotIndex index, store::SnapshotIndex::load(store, *codec, m));
	return Loaded{std::move(m), std::move(index)};
}

Result<void> checkBlockIndex(const char *option, uint64_t block, uint64_t count, const std::string &snapshotId)
{
	if (block < count)
		return {};
	return fail(errc::kInvalidParameterValue, std::string(option) + " " + std::to_string(block) +
							  " is out of range: snapshot " + snapshotId + " has blocks 0 to " +
							  std::to_string(count - 1) + " of 512 KiB");
}

// The entries `entry` gives for the blocks from page.start on, up to
// page.maxResults of them; `next` is the first block past a full page that
// would have given one (so a NextToken never leads to an empty page).
template<typename T, typename F>
void collect(const BlockPage &page, uint64_t count, F entry, std::vector<T> &out, std::optional<uint64_t> &next)
{
	for (uint64_t b = page.start; b < count; b++) {
		std::optional<T> e = entry(b);
		if (!e)
			continue;
		if (out.size() == page.maxResults) {
			next = b;
			return;
		}
		out.push_back(std::move(*e));
	}
}

} // namespace

std::string blockCursor(uint64_t nextBlock)
{
	std::string text = std::string(kCursorPrefix) + std::to_string(nextBlock);
	return crypto::base64(std::span((const uint8_t *)text.data(), text.size()));
}

Result<uint64_t> parseBlockCursor(const std::string &token)
{
	auto bytes = crypto::fromBase64(token);
	std::string text = bytes ? std::string(bytes->begin(), bytes->end()) : "";
	std::string digits = text.starts_with(kCursorPrefix) ? text.substr(kCursorPrefix.size()) : "";
	// One spelling per cursor: no sign, no leading zero.
	if (digits.empty() || digits.size() > 18 || (digits.size() > 1 && digits[0] == '0') ||
	    !std::all_of(digits.begin(), digits.end(), ::isdigit))
		return fail(errc::kInvalidParameterValue, "--next-token '" + token + "' is not a NextToken of a block listing");
	return std::stoull(digits);
}

Result<BlockList> listSnapshotBlocks(store::Store &store, const std::string &snapshotId, const BlockPage &page,
				     TimePoint now)
{
	VS_TRY(checkSnapshotId(snapshotId));
	// gc must not remove the index pages while they are read.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "block listing of " + snapshotId));
	VS_ASSIGN(Loaded s, loadSnapshot(store, snapshotId));
	uint64_t count = blockCount(s.manifest.volumeSize);
	VS_TRY(checkBlockIndex("--starting-block-index", page.start, count, snapshotId));
	BlockTokens tokens(store.domain());
	BlockList list;
	list.volumeSize = s.manifest.volumeSize;
	list.expiry = now + kBlockTokenLifetime;
	auto entry = [&](uint64_t b) -> std::optional<ListedBlock> {
		auto identity = blockIdentity(s.index, b);
		if (!identity)
			return std::nullopt;
		return ListedBlock{b, tokens.mint(snapshotId, b, *identity, list.expiry)};
	};
	collect(page, count, entry, list.blocks, list.next);
	return list;
}

Result<ChangedBlockList> listChangedBlocks(store::Store &store, const std::string &first, const std::string &second,
					   const BlockPage &page, TimePoint now)
{
	VS_TRY(checkSnapshotId(second));
	if (!first.empty())
		VS_TRY(checkSnapshotId(first));
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "changed blocks of " + second));
	VS_ASSIGN(Loaded b, loadSnapshot(store, second));
	std::optional<Loaded> a;
	if (!first.empty()) {
		VS_ASSIGN(Loaded loaded, loadSnapshot(store, first));
		if (loaded.manifest.volumeId != b.manifest.volumeId)
			return fail(errc::kInvalidParameterValue, "snapshots " + first + " (of " + loaded.manifest.volumeId +
									  ") and " + second + " (of " + b.manifest.volumeId +
									  ") are not of the same volume");
		a = std::move(loaded);
	}
	// A volume that grew or shrank between them: its blocks past the end
	// of one snapshot read as zeros there.
	uint64_t count = std::max(blockCount(b.manifest.volumeSize), a ? blockCount(a->manifest.volumeSize) : 0);
	VS_TRY(checkBlockIndex("--starting-block-index", page.start, count, second));
	BlockTokens tokens(store.domain());
	ChangedBlockList list;
	list.volumeSize = b.manifest.volumeSize;
	list.expiry = now + kBlockTokenLifetime;
	auto entry = [&](uint64_t block) -> std::optional<ChangedBlock> {
		auto before = a ? blockIdentity(a->index, block) : std::nullopt;
		auto after = blockIdentity(b.index, block);
		if (before == after)
			return std::nullopt;
		ChangedBlock c{block, "", ""};
		if (before)
			c.firstToken = tokens.mint(first, block, *before, list.expiry);
		if (after)
			c.secondToken = tokens.mint(second, block, *after, list.expiry);
		return c;
	};
	collect(page, count, entry, list.blocks, list.next);
	return list;
}

Result<Bytes> getSnapshotBlock(store::Store &store, const std::string &snapshotId, uint64_t block,
			       const std::string &token, TimePoint now)
{
	VS_TRY(checkSnapshotId(snapshotId));
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "block read of " + snapshotId));
	VS_ASSIGN(Loaded s, loadSnapshot(store, snapshotId));
	VS_TRY(checkBlockIndex("--block-index", block, blockCount(s.manifest.volumeSize), snapshotId));
	auto identity = blockIdentity(s.index, block);
	if (!identity)
		return fail(errc::kInvalidParameterValue, "block " + std::to_string(block) + " of " + snapshotId +
								  " holds no data, so no --block-token is valid for it");
	VS_TRY(BlockTokens(store.domain()).check(token, snapshotId, block, *identity, now));

	Bytes out(kBlockSize, 0);
	uint64_t begin = block * kBlockSize;
	uint32_t chunk = s.index.chunkSize();
	SlotRange slots = slotsOfBlock(s.manifest.volumeSize, chunk, block);
	VS_ASSIGN(auto codec, store.codecOf(s.manifest));
	for (uint64_t slot = slots.first; slot < slots.end; slot++) {
		const store::ChunkId &id = s.index.at(slot);
		if (store::isZeroId(id))
			continue;
		VS_ASSIGN(Bytes plain, store.readChunk(*codec, id));
		if (plain.size() != s.index.slotLength(slot))
			return fail(errc::kCorrupt, "chunk " + store::idHex(id) + " of " + snapshotId + " has " +
							    std::to_string(plain.size()) + " bytes, its slot " +
							    std::to_string(s.index.slotLength(slot)));
		// The part of the chunk inside the block, and where it goes.
		uint64_t chunkBegin = slot * chunk;
		uint64_t from = std::max(begin, chunkBegin);
		uint64_t to = std::min(begin + kBlockSize, chunkBegin + plain.size());
		std::memcpy(out.data() + (from - begin), plain.data() + (from - chunkBegin), to - from);
	}
	return out;
}

} // namespace virtsnap::engine
