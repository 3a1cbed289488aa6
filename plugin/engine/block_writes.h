// The write side of the EBS direct APIs: a snapshot made from outside data,
// block by block (start, put, complete), and the path import-image takes.
//
// Between calls, which may be separate processes (the CLI runs in process
// without virtsnapd), a snapshot being written lives in the host's state
// directory, never in the store:
//
//   STATE/block-writes/<snap-id>/state.json     what start-snapshot was asked
//   STATE/block-writes/<snap-id>/activity       its mtime: the last put
//   STATE/block-writes/<snap-id>/lock           flock: puts record, complete seals
//   STATE/block-writes/<snap-id>/blocks/<N>     block N: its SHA-256 and the
//                                               chunk ids of its slots
//
// A put stores its data through the store's chunk writer (dedup applies)
// under a shared lease, and only then records the block. Its chunks are
// then in packs no manifest names: gc keeps them because this host's gc
// asks pinnedChunks() for them (store::GcOptions::pinned), and complete
// checks, under its lease, that every one is still in the store before it
// writes the manifest (a gc on another host sharing the store knows
// nothing of this directory: it cannot make a snapshot wrong, only fail it).
//
// A snapshot not completed within its timeout after its start or its last
// put (EBS's rule) goes to error: its block records are dropped, so its
// chunks are garbage for the next gc.
//
// Blocks are 512 KiB whatever the store's chunk size, so a put covers whole
// chunks only on a store whose chunks are at most 512 KiB (the default is
// 64 KiB); start refuses a store with larger chunks.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "block_map.h"
#include "block_tokens.h"
#include "core/states.h"
#include "core/unique_fd.h"
#include "store/manifest.h"
#include "store/store.h"

namespace virtsnap::engine {

// EBS gives snapshots made this way the fake volume vol-ffffffff; ours are
// 17 hex digits, so the same idea in our shape. They share it whatever
// their parent: taking a captured disk's volume id would make the next
// capture of that disk find a "latest snapshot" without a dirty bitmap.
inline constexpr const char *kDirectVolumeId = "vol-fffffffffffffffff";

// As EBS: 60 minutes unless asked, from 10 minutes to 72 hours.
inline constexpr std::chrono::minutes kDefaultWriteTimeout{60};
inline constexpr std::chrono::minutes kMinWriteTimeout{10};
inline constexpr std::chrono::minutes kMaxWriteTimeout{72 * 60};
// EBS's largest volume: 64 TiB.
inline constexpr uint64_t kMaxWriteVolumeGiB = 65536;

struct StartRequest {
	uint64_t volumeSizeGiB = 0;
	std::string parentSnapshotId; // "" for none
	std::string description;
	store::Tags tags;
	std::string ownerId;
	std::string accountId; // the owning account
	std::chrono::minutes timeout = kDefaultWriteTimeout;
	// --encrypted [--kms-key-id]: sealed under kmsKeyId, as the daemon
	// chose it. A child is its parent's: same encryption, same key.
	bool encrypted = false;
	std::string kmsKeyId;
};

// A snapshot being written, as its state.json says.
struct BlockWrite {
	std::string snapshotId;
	std::string parentSnapshotId;
	std::string description;
	std::string ownerId;
	std::string accountId; // the owning account; "" in state files from before accounts: the default
	// The parent's: a child holds its data, so it is encrypted when the
	// parent is (else a child of an encrypted snapshot would restore in
	// plaintext, and could be made public).
	bool encrypted = false;
	std::string kmsKeyId;
	std::string startTime; // ISO 8601
	store::Tags tags;
	uint64_t volumeSize = 0; // bytes
	std::chrono::minutes timeout = kDefaultWriteTimeout;
	SnapshotState state = SnapshotState::Pending; // Pending or Error
	std::string stateMessage;
};

// One block to put: its index, its 512 KiB and their base64 SHA-256.
struct BlockPut {
	uint64_t block = 0;
	std::span<const uint8_t> data;
	std::string checksum;
};

// What complete-snapshot ended in: Completed with its manifest, or Error
// with why (a wrong count or aggregate, blocks gone from the store).
struct CompleteOutcome {
	SnapshotState state = SnapshotState::Error;
	std::string stateMessage;
	store::Manifest manifest; // written when Completed
};

// The base64 of SHA-256 over the blocks' raw 32-byte digests, in block
// index order: EBS's LINEAR aggregate (as AWS's own coldsnap computes it).
std::string linearAggregate(const std::vector<crypto::Digest> &blockChecksums);

// One host's snapshots being written, under its state directory.
class BlockWrites
{
public:
	explicit BlockWrites(const std::filesystem::path &stateDir);

	// A new pending snapshot (its id minted here). InvalidParameterValue
	// for a size out of range or smaller than the parent's, a store with
	// chunks over 512 KiB; InvalidSnapshot.NotFound for an unknown parent.
	Result<BlockWrite> start(store::Store &store, const StartRequest &request, TimePoint now);

	// Stores one 512 KiB block once its base64 SHA-256 checks out.
	// InvalidParameterValue for a mismatch, a wrong length, an index past
	// the volume; IncorrectState for a snapshot not pending (or timed out
	// now); InvalidSnapshot.NotFound for one this host is not writing.
	Result<void> put(store::Store &store, const std::string &snapshotId, uint64_t block,
			 std::span<const uint8_t> data, const std::string &checksum, TimePoint now);
	// put() of several blocks at once, as one: every block is checked
	// before any is stored, and their chunks share packs (an import's
	// blocks would otherwise make a small pack each).
	Result<void> putBlocks(store::Store &store, const std::string &snapshotId, const std::vector<BlockPut> &blocks,
			       TimePoint now);

	// Seals the snapshot: the parent's blocks with the put ones replacing
	// them, written as any snapshot (pages, then the manifest). A count or
	// an aggregate that does not match the blocks put ends it in error
	// (that is an outcome, not an Error); `aggregate` "" checks none.
	Result<CompleteOutcome> complete(store::Store &store, const std::string &snapshotId, uint64_t changedBlocks,
					 const std::string &aggregate, TimePoint now);

	// Ends a pending snapshot in error (an import that failed midway):
	// nothing waits for its timeout, and its blocks are garbage.
	Result<void> abandon(const std::string &snapshotId, const std::string &why);
	// Removes what is kept of a write whose catalog row shows it in error
	// (delete-snapshot of it), so that nothing shows it again.
	Result<void> forget(const std::string &snapshotId);

	// The snapshot as its state says, nullopt when this host has none.
	Result<std::optional<BlockWrite>> find(const std::string &snapshotId) const;
	// Every snapshot this host is writing or that failed, as their states
	// say (what a catalog rebuild shows, since no manifest names them).
	Result<std::vector<BlockWrite>> list() const;
	// Moves every pending snapshot whose timeout passed to error and drops
	// its blocks; returns those it moved.
	Result<std::vector<BlockWrite>> expire(TimePoint now);
	// The chunk ids every pending snapshot's blocks hold: what gc must keep.
	Result<std::vector<store::ChunkId>> pinnedChunks(uint32_t chunkSize) const;

private:
	std::filesystem::path dirOf(const std::string &snapshotId) const { return root_ / snapshotId; }
	Result<BlockWrite> load(const std::string &snapshotId) const;
	Result<void> save(const BlockWrite &w) const;
	// The write as it is under its directory's lock, held while `lock`
	// lives. An unknown id is NotFound as load() says it.
	struct Locked {
		BlockWrite write;
		UniqueFd lock;
	};
	Result<Locked> lockedWrite(const std::string &snapshotId) const;
	// Ends the snapshot in error and drops its blocks (the lock held).
	Result<void> endInError(BlockWrite &w, const std::string &why) const;
	// IncorrectState unless pending; a timed-out one is failed first.
	Result<void> checkPending(BlockWrite &w, TimePoint now) const;
	Result<TimePoint> deadline(const BlockWrite &w) const;
	// Calls `visit` for every pending snapshot, its directory locked.
	Result<void> forEachPending(
		const std::function<Result<void>(const std::filesystem::path &dir, BlockWrite &w)> &visit) const;

	std::filesystem::path root_;
};

} // namespace virtsnap::engine
