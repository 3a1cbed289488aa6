// Store URLs (backend.h): which backend, and where in it.
#pragma once

#include <string>

#include "core/error.h"

namespace virtsnap::store {

struct StoreUrl {
	enum class Scheme { Local, Rados, S3 };
	Scheme scheme = Scheme::Local;
	std::string text; // as given

	// A plain path, or file:///path.
	std::string path;

	// rados://POOL[/NAMESPACE][?conf=FILE&id=NAME]: the cluster's keys come
	// from the keyring the conf file names, never from the URL.
	std::string pool, radosNamespace;
	std::string conf = "/etc/ceph/ceph.conf";
	std::string id = "virtsnap";

	// s3://BUCKET[/PREFIX]?endpoint=URL[&region=R][&style=path|virtual]
	std::string bucket, prefix, endpoint;
	std::string region = "us-east-1";
	bool virtualHosted = false;
};

// InvalidParameterValue naming what is wrong with the URL.
Result<StoreUrl> parseStoreUrl(const std::string &url);

} // namespace virtsnap::store
