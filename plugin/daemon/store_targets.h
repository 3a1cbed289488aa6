// Copies pushed from this store into another: the stores virtsnap.conf
// names in [store-target URL] groups (core/config.h), each opened with the
// key the file gives it. A caller names a target by its URL alone, never
// a key file or credentials, so the root daemon opens no store with keys
// of a caller's choosing. copy-snapshot --destination-store and the
// CrossStoreCopyRules of lifecycle policies (policy_copies.cc) use it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "context.h"
#include "engine/snapshot_copy.h"

namespace virtsnap::daemon {

// A store URL as a copy shows it: any user:password@ before a host (an S3
// endpoint's) left out. Credentials come from files, never from URLs, but
// a URL is what a user typed.
std::string withoutCredentials(std::string url);

// The URLs of the configured targets, as checkCopyTargets takes them.
std::vector<std::string> storeTargetUrls(const Context &ctx);

// The target `url` names, opened with its configured key: one line naming
// `field` when the config file has no [store-target URL] for it, or the
// store and the cause when it cannot be opened (StoreUnavailable for one
// out of reach, WrongKey, ...); InvalidParameterValue when it is this
// store (its copies are copy-snapshot's without a destination).
Result<std::unique_ptr<store::Store>> openStoreTarget(Context &ctx, const std::string &url, const std::string &field);

// A completed snapshot of this store copied into `target`: the copy's
// manifest once written there. It holds a claim that keeps this store's gc
// out (Admission::beginGc) and, in virtsnapd, a transfer slot of
// --max-parallel-jobs; it is a job a stopping daemon interrupts. It takes
// a fresh id and start time unless `request` has them, and emits a
// copySnapshot event either way. The
// target's own catalog, if any host has one, learns the copy from its
// manifest, as for any snapshot another host made.
Result<store::Manifest> pushCopy(Context &ctx, store::Store &target, engine::CopyRequest request);

} // namespace virtsnap::daemon
