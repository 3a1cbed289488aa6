// The store in an S3 bucket (AWS, Ceph RGW, MinIO, Garage), over libcurl,
// which signs requests with AWS SigV4 itself.
#pragma once

#include "backend.h"
#include "backend_url.h"

namespace virtsnap::store {

Result<std::unique_ptr<Backend>> openS3Backend(const StoreUrl &url, const BackendSettings &settings);

// Makes the URL's bucket, for the tests' throwaway buckets and operators who
// would rather not reach for another S3 client; a bucket we own already is
// no error. With `objectLock`, the bucket has S3 Object Lock (and so
// versioning), which only a bucket's creation can turn on.
Result<void> createS3Bucket(const StoreUrl &url, const BackendSettings &settings, bool objectLock = false);

} // namespace virtsnap::store
