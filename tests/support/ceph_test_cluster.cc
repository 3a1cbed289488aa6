// ceph-test-cluster: the tests' throwaway Ceph cluster (ceph_cluster.h) for
// programs that are not test binaries, such as tests/bench/run-bench: one
// mon, a memstore OSD, radosgw, a pool and a bucket. It prints one JSON line
// saying how to reach them and keeps the cluster up until its stdin closes,
// so the cluster goes when its caller does, however the caller ends (the
// cluster's watchdog covers this program's own death).
//
//     ceph-test-cluster [--pool NAME] [--bucket NAME] [--memstore-bytes N]
//
// Not installed: a store on memstore loses everything when it stops.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "json/json.h"
#include "store/backend_url.h"
#include "store/s3_backend.h"
#include "tests/support/backends.h"
#include "tests/support/ceph_cluster.h"

namespace {

using virtsnap::test::CephCluster;
using virtsnap::test::CephOptions;

int usage(const char *why)
{
	std::fprintf(stderr, "ceph-test-cluster: %s\nusage: ceph-test-cluster [--pool NAME] [--bucket NAME] "
			     "[--memstore-bytes N]\n",
		     why);
	return 2;
}

// SIGTERM and SIGINT end the wait like a closed stdin, so the destructor
// stops the daemons instead of leaving them to the watchdog.
volatile std::sig_atomic_t stopRequested = 0;

void onSignal(int)
{
	stopRequested = 1;
}

void waitForEndOfInput()
{
	char buf[256];
	while (!stopRequested) {
		ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
		if (n == 0 || (n < 0 && errno != EINTR))
			return;
	}
}

} // namespace

int main(int argc, char **argv)
{
	std::string pool = "virtsnap-bench", bucket = "virtsnap-bench";
	CephOptions options;
	// The manager serves nothing a store needs, and costs a core at start.
	options.manager = false;
	for (int i = 1; i < argc; i++) {
		std::string arg = argv[i];
		if (i + 1 >= argc)
			return usage(("missing value after " + arg).c_str());
		if (arg == "--pool")
			pool = argv[++i];
		else if (arg == "--bucket")
			bucket = argv[++i];
		else if (arg == "--memstore-bytes")
			options.memstoreBytes = std::strtoull(argv[++i], nullptr, 10);
		else
			return usage(("unknown option " + arg).c_str());
	}
	if (bucket.size() < 3 || bucket.size() > 63)
		return usage("an S3 bucket name has 3 to 63 characters");

	struct sigaction sa{};
	sa.sa_handler = onSignal;
	::sigaction(SIGTERM, &sa, nullptr);
	::sigaction(SIGINT, &sa, nullptr);
	// A caller that is gone must not kill us with SIGPIPE before we stop the cluster.
	std::signal(SIGPIPE, SIG_IGN);

	std::string why;
	std::unique_ptr<CephCluster> cluster = CephCluster::start(options, &why);
	if (!cluster) {
		std::fprintf(stderr, "ceph-test-cluster: %s\n", why.c_str());
		return 1;
	}
	if (!cluster->createPool(pool, &why)) {
		std::fprintf(stderr, "ceph-test-cluster: create pool %s: %s\n", pool.c_str(), why.c_str());
		return 1;
	}
	const virtsnap::test::S3Gateway *gateway = cluster->gateway(&why);
	if (!gateway) {
		std::fprintf(stderr, "ceph-test-cluster: radosgw: %s\n", why.c_str());
		return 1;
	}
	// virtsnap init does not create buckets (README: the bucket must exist).
	std::string s3Url = "s3://" + bucket + "?endpoint=" + gateway->endpoint;
	virtsnap::store::BackendSettings settings;
	settings.s3CredentialsFile = gateway->credentialsFile;
	auto url = virtsnap::store::parseStoreUrl(s3Url);
	auto made = url ? virtsnap::store::createS3Bucket(*url, settings)
			: virtsnap::Result<void>(std::unexpected(url.error()));
	if (!made) {
		std::fprintf(stderr, "ceph-test-cluster: create bucket %s: %s\n", bucket.c_str(),
			     made.error().toString().c_str());
		return 1;
	}

	virtsnap::Json out = virtsnap::Json::object();
	out.set("rados_url", virtsnap::Json::string(virtsnap::test::radosUrl(pool, "", cluster->confPath())));
	out.set("s3_url", virtsnap::Json::string(s3Url));
	out.set("credentials_file", virtsnap::Json::string(gateway->credentialsFile));
	out.set("conf", virtsnap::Json::string(cluster->confPath()));
	out.set("pool", virtsnap::Json::string(pool));
	out.set("bucket", virtsnap::Json::string(bucket));
	out.set("endpoint", virtsnap::Json::string(gateway->endpoint));
	out.set("start_ms", virtsnap::Json::integer(cluster->startTime().count()));
	std::string line = out.dump() + "\n";
	if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size() || std::fflush(stdout) != 0)
		return 1;

	waitForEndOfInput();
	cluster.reset();
	return 0;
}
