// Verification of snapshots against the store (FORMAT.md, "Verification"):
// every manifest, index page and chunk a snapshot needs is read from its
// pack, authenticated, decompressed, length-checked and re-hashed to its id.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "store.h"

namespace virtsnap::store {

struct SnapshotVerification {
	std::string snapshotId;
	bool ok = true;
	uint64_t damagedChunks = 0; // distinct damaged chunks (pages included) it needs
	// One line per problem: which chunk (16 hex digits of its id), which
	// pack, which slot, and why. Capped (kMaxProblems, then a count).
	std::vector<std::string> problems;
};

struct VerifyReport {
	std::vector<SnapshotVerification> snapshots; // as asked, or all by id
	uint64_t snapshotsDamaged = 0;
	uint64_t chunksChecked = 0; // distinct chunks read, index pages included
	uint64_t chunksDamaged = 0;
	uint64_t bytesRead = 0;     // blob bytes read from packs
	uint64_t bytesChecked = 0;  // plaintext bytes that passed every check
	// Problems of the store itself (a pack index that no longer loads).
	std::vector<std::string> storeProblems;

	bool ok() const { return snapshotsDamaged == 0 && storeProblems.empty(); }
};

inline constexpr size_t kMaxProblems = 100;

// `snapshotIds` empty: every snapshot of the store. A snapshot that does
// not exist is reported damaged with an InvalidSnapshot.NotFound problem.
// Damage is reported, not returned: an Error means verification could not
// run (store unreadable, interrupted). Each distinct chunk is read once,
// by `threads` workers (0: one per CPU, at most 16); memory holds the
// distinct ids, not their data.
Result<VerifyReport> verifySnapshots(Store &store, const std::vector<std::string> &snapshotIds,
				     unsigned threads = 0);

} // namespace virtsnap::store
