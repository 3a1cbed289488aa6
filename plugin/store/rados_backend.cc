#include "rados_backend.h"

namespace virtsnap::store {

// The librados implementation lands in the commits that follow this one.
Result<std::unique_ptr<Backend>> openRadosBackend(const StoreUrl &url, const BackendSettings &)
{
	return fail(errc::kInvalidParameterValue, "store URL '" + url.text + "': rados:// is not built in yet");
}

} // namespace virtsnap::store
