#include "backend.h"

#include "backend_url.h"
#include "local_backend.h"
#include "rados_backend.h"
#include "s3_backend.h"

namespace virtsnap::store {

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
