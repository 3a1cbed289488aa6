// The store backends that tests run against: a local directory always; RADOS
// and S3 on the throwaway Ceph cluster of ceph_cluster.h, which the first
// test that needs one starts for the whole test binary and which stops with
// it. One suite checks the backend contract on each (tests/store/
// backend_test.cc); the store's own tests run over each too.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "store/backend.h"

namespace virtsnap::test {

struct BackendUnderTest {
	std::string name; // "local", "rados", "s3"
	// A fresh, empty store location each call (a directory, a RADOS
	// namespace, an S3 prefix), as a store URL. Empty with the reason in
	// *why when the backend cannot be had here.
	std::function<std::string(std::string *why)> freshUrl;
	// What openBackend needs besides the URL (S3's credentials file).
	store::BackendSettings settings;
};

// Every backend by name, in the order the suites instantiate them.
const std::vector<std::string> &backendNames();
// The backend named, or null when there is none by that name.
const BackendUnderTest *backendNamed(const std::string &name);

// A fresh backend of that kind, or null with the reason in *why.
std::unique_ptr<store::Backend> freshBackend(const std::string &name, std::string *url, std::string *why);

// rados://POOL/NS?conf=CONF&id=admin, CONF %-escaped as a URL needs (any id
// works on the test clusters, which have no cephx).
std::string radosUrl(const std::string &pool, const std::string &ns, const std::string &conf);

} // namespace virtsnap::test

// In a test body or SetUp(): the named backend, or a skip (a failure under
// CI=true, where a skip would hide a broken runner) when it cannot be had.
#define REQUIRE_BACKEND(name, backendOut, urlOut)                                                       \
	do {                                                                                             \
		std::string vs_why_;                                                                     \
		backendOut = ::virtsnap::test::freshBackend(name, &(urlOut), &vs_why_);                  \
		if (!(backendOut)) {                                                                     \
			if (::virtsnap::test::inCi())                                                    \
				FAIL() << "backend " << (name) << ": " << vs_why_ << " (required when CI=true)"; \
			else                                                                             \
				GTEST_SKIP() << "backend " << (name) << ": " << vs_why_;                 \
		}                                                                                        \
	} while (0)
