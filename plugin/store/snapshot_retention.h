// The backend's own immutability for a locked snapshot (FORMAT.md,
// "Held manifests"): on S3 with Object Lock, a retention on every object
// that reading the snapshot back needs, so that the store's credentials
// alone cannot destroy it before its lock ends. Backends without it
// (a directory, RADOS) leave the lock to virtsnap alone.
#pragma once

#include <chrono>
#include <cstddef>

#include "store.h"

namespace virtsnap::store {

// Retains until `until` (the backend's clock), in `mode` or more strictly
// (Backend::retain): the snapshot's manifest, the store's config.json and
// key domain, and every pack and pack index that holds an index page or a
// chunk of it. The chunk map must know its packs (a shared lease refreshed
// it). Returns how many objects; UnsupportedOperation where the backend
// cannot retain.
Result<size_t> retainSnapshot(Store &store, const Manifest &m, RetentionMode mode,
			      std::chrono::system_clock::time_point until);

} // namespace virtsnap::store
