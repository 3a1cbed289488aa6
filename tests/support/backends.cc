#include "backends.h"

#include <atomic>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>

#include "ceph_cluster.h"
#include "store/backend_url.h"
#include "store/s3_backend.h"
#include "test_env.h"

namespace virtsnap::test {

namespace {

// Local stores live under one directory per test binary, removed with it.
class LocalRoot
{
public:
	std::string fresh()
	{
		static std::atomic<int> next{0};
		std::string dir = root_.path() + "/store-" + std::to_string(next++);
		return dir;
	}

private:
	TempDir root_{"vs-backend"};
};

// %-escapes what a URL's query value cannot hold as it is.
std::string urlEscaped(const std::string &s)
{
	static const char hex[] = "0123456789ABCDEF";
	std::string out;
	for (unsigned char c : s) {
		if (std::isalnum(c) || std::strchr("/._-~", c))
			out += char(c);
		else
			out += std::string("%") + hex[c >> 4] + hex[c & 15];
	}
	return out;
}

// RADOS stores are namespaces of one pool on the binary's shared cluster:
// the pool is made once, a namespace costs nothing and needs no cleaning.
std::string freshRadosUrl(std::string *why)
{
	static std::mutex mutex;
	static std::optional<std::string> poolFailure;
	static std::atomic<int> next{0};
	constexpr const char *kPool = "virtsnap-test";
	std::lock_guard lock(mutex);
	CephCluster *cluster = CephCluster::shared(why);
	if (!cluster)
		return "";
	if (!poolFailure) {
		std::string reason;
		bool created = cluster->createPool(kPool, &reason);
		poolFailure = created ? "" : "cannot create pool " + std::string(kPool) + ": " + reason;
	}
	if (!poolFailure->empty()) {
		*why = *poolFailure;
		return "";
	}
	return radosUrl(kPool, "ns-" + std::to_string(next++), cluster->confPath());
}

std::vector<BackendUnderTest> &registry();

// S3 on the shared cluster's radosgw: one bucket per test binary, made on
// first use, and a fresh prefix in it per URL. The credentials file is the
// gateway user's, known once radosgw runs: it goes into the registry's
// settings then, before openBackend reads them.
std::string freshS3Url(std::string *why)
{
	static std::mutex mutex;
	static std::string bucket, endpoint;
	static int next = 0;
	std::lock_guard lock(mutex);
	if (bucket.empty()) {
		CephCluster *cluster = CephCluster::shared(why);
		const S3Gateway *gateway = cluster ? cluster->gateway(why) : nullptr;
		if (!gateway)
			return "";
		store::BackendSettings settings;
		settings.s3CredentialsFile = gateway->credentialsFile;
		const std::string name = "virtsnap-tests";
		auto url = store::parseStoreUrl("s3://" + name + "?endpoint=" + gateway->endpoint);
		auto made = url ? store::createS3Bucket(*url, settings) : Result<void>(std::unexpected(url.error()));
		if (!made) {
			*why = "create the tests' bucket: " + made.error().toString();
			return "";
		}
		for (BackendUnderTest &b : registry())
			if (b.name == "s3")
				b.settings = settings;
		bucket = name;
		endpoint = gateway->endpoint;
	}
	return "s3://" + bucket + "/store-" + std::to_string(next++) + "?endpoint=" + endpoint;
}

std::vector<BackendUnderTest> &registry()
{
	static std::vector<BackendUnderTest> backends = [] {
		std::vector<BackendUnderTest> all;
		all.push_back({"local", [](std::string *) {
				       static LocalRoot root;
				       return root.fresh();
			       }, {}});
		all.push_back({"rados", freshRadosUrl, {}});
		all.push_back({"s3", freshS3Url, {}});
		return all;
	}();
	return backends;
}

} // namespace

const std::vector<std::string> &backendNames()
{
	static std::vector<std::string> names = [] {
		std::vector<std::string> out;
		for (const BackendUnderTest &b : registry())
			out.push_back(b.name);
		return out;
	}();
	return names;
}

const BackendUnderTest *backendNamed(const std::string &name)
{
	for (const BackendUnderTest &b : registry())
		if (b.name == name)
			return &b;
	return nullptr;
}

std::string radosUrl(const std::string &pool, const std::string &ns, const std::string &conf)
{
	// admin: the id the ceph tools use.
	return "rados://" + pool + (ns.empty() ? "" : "/" + ns) + "?conf=" + urlEscaped(conf) + "&id=admin";
}

std::unique_ptr<store::Backend> freshBackend(const std::string &name, std::string *url, std::string *why)
{
	const BackendUnderTest *b = backendNamed(name);
	if (!b) {
		*why = "no such backend";
		return nullptr;
	}
	*url = b->freshUrl(why);
	if (url->empty())
		return nullptr;
	auto backend = store::openBackend(*url, b->settings);
	if (!backend) {
		*why = backend.error().toString();
		return nullptr;
	}
	return std::move(*backend);
}

} // namespace virtsnap::test
