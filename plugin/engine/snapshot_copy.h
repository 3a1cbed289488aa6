// copy-snapshot's data path: a snapshot of one store (or of this one) made
// into a new snapshot of the destination store, as EBS's CopySnapshot.
//
// How much moves depends on the key domain the copy is sealed under
// (destinationDomain) against the source's:
//  - the same store and the same domain: nothing; the copy is a new
//    manifest over the source's index pages, and so its chunks;
//  - another domain (another store, or a re-encrypting copy: another
//    KMS key, kms_keys.h): each chunk is read and
//    authenticated under the source's keys and sealed anew under the
//    destination's (new keyed ids); what the destination holds already
//    costs no space (dedup), but is read all the same;
//  - incremental: when the destination holds a copy of the source's
//    parent (findCopyBase), only the slots where the source differs from
//    its parent are read; the others take their ids from that copy.
// The copy depends on no manifest of the source afterwards: deleting the
// source, or gc on either store, never breaks it.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "snapshot_engine.h"
#include "store/manifest.h"
#include "store/snapshot_index.h"
#include "store/store.h"

namespace virtsnap::engine {

struct CopyRequest {
	std::string sourceSnapshotId;
	std::string snapshotId;     // the copy's, given out when it went pending
	std::string sourceStoreUrl; // as the copy shows it; "" when the source is the destination store
	std::string description;    // "" gives EBS's "[Copied SOURCE from STORE]"
	store::Tags tags;           // a copy keeps no tags of the source's unless given
	std::string ownerId;
	std::string accountId;      // the copying account: the copy's owner
	// --encrypted: the copy is encrypted even when the source is not. A
	// copy of an encrypted snapshot always is.
	bool encrypted = false;
	// The key an encrypted copy is sealed under, as the daemon chose it
	// (--kms-key-id, the source's, the account's default); "": the
	// source's key within one store, else the destination's default.
	std::string kmsKeyId;
	std::string startTime;      // when it went pending (ISO 8601)
};

// EBS's description of a copy given none: "[Copied SOURCE from STORE]".
std::string defaultCopyDescription(const std::string &sourceSnapshotId, const std::string &sourceStoreUrl);

// The source's manifest, checked before the copy goes pending: the source
// exists (InvalidSnapshot.NotFound) and its geometry is the destination's
// (InvalidParameterValue: copies do not re-cut chunks).
Result<store::Manifest> copySourceOf(store::Store &source, store::Store &destination,
				     const std::string &snapshotId);

// The KmsKeyId of the copy ("" when it is not encrypted), and the key
// domain of the destination its chunks are sealed under: a different
// domain from the source's re-seals every chunk.
std::string copyKmsKeyId(const store::Store &source, const store::Store &destination, const store::Manifest &src,
			 const CopyRequest &request);
Result<const store::KeyDomain *> destinationDomain(store::Store &destination, const std::string &kmsKeyId);

// A copy of the source's parent that the destination holds: the copy whose
// manifest names the parent and the source store's store_id (config.json,
// so no spelling of a URL matters), the latest if several. Both indexes
// are loaded: the parent's from the source, the copy's from the
// destination. Only a copy sealed under `domain` counts: ids of another
// key name no chunk of this one.
struct CopyBase {
	std::string snapshotId;       // the destination's copy of the parent
	store::SnapshotIndex parent;  // the parent, in the source
	store::SnapshotIndex copy;    // its copy, in the destination
};
Result<std::optional<CopyBase>> findCopyBase(store::Store &source, store::Store &destination,
					     const store::Manifest &snapshot, const store::KeyDomain &domain);

// Makes the copy (its manifest written last, under shared leases on both
// stores) and returns its manifest: BytesAdded are the blobs the
// destination gained, BytesTransferred the chunk bytes read from the
// source. `cancelled` is polled between chunks.
Result<store::Manifest> copySnapshot(store::Store &source, store::Store &destination, const CopyRequest &request,
				     const ProgressFn &progress, const std::function<bool()> &cancelled);

} // namespace virtsnap::engine
