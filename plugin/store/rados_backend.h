// The store in a Ceph RADOS pool (librados' C API), optionally in one RADOS
// namespace: every object one RADOS object, a pack written in one
// operation (osd_max_write_size is 90 MB, a pack 32 MiB).
#pragma once

#include "backend.h"
#include "backend_url.h"

namespace virtsnap::store {

Result<std::unique_ptr<Backend>> openRadosBackend(const StoreUrl &url, const BackendSettings &settings);

} // namespace virtsnap::store
