#include "backend.h"

#include "backend_url.h"
#include "local_backend.h"
#include "rados_backend.h"
#include "s3_backend.h"

namespace virtsnap::store {

Result<void> Backend::retain(const std::string &name, RetentionMode, std::chrono::system_clock::time_point)
{
	return fail(errc::kUnsupported, describe() + " cannot keep " + name +
						" from being destroyed: only S3 with Object Lock can");
}

Result<std::unique_ptr<Backend>> openBackend(const std::string &url, const BackendSettings &settings)
{
	VS_ASSIGN(StoreUrl parsed, parseStoreUrl(url));
	switch (parsed.scheme) {
	case StoreUrl::Scheme::Rados:
		return openRadosBackend(parsed, settings);
	case StoreUrl::Scheme::S3:
		return openS3Backend(parsed, settings);
	case StoreUrl::Scheme::Local:
		break;
	}
	return std::unique_ptr<Backend>(std::make_unique<LocalBackend>(parsed.path));
}

} // namespace virtsnap::store
