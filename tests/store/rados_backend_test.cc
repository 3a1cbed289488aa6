// What the contract suite cannot reach on RADOS: stores it cannot open or
// reach (a wrong pool, a wrong conf file, a cluster that is down) and what
// RADOS namespaces and the clock probe add. Each failure is one error with
// a code a caller can act on, within the timeout the caller set.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "store_test_util.h"
#include "tests/support/backends.h"
#include "tests/support/ceph_cluster.h"
#include "tests/support/test_env.h"

namespace virtsnap::store::test {
namespace {

using Clock = std::chrono::steady_clock;
using virtsnap::test::CephCluster;
using virtsnap::test::radosUrl;

// Well under a minute: what "bounded" means here, however slow the machine.
constexpr auto kBounded = std::chrono::seconds(50);

#define REQUIRE_CLUSTER(clusterOut)                                                                 \
	do {                                                                                         \
		std::string vs_why_;                                                                 \
		clusterOut = CephCluster::shared(&vs_why_);                                          \
		if (!(clusterOut)) {                                                                 \
			if (virtsnap::test::inCi())                                                  \
				FAIL() << "ceph test cluster: " << vs_why_ << " (required when CI=true)"; \
			else                                                                         \
				GTEST_SKIP() << "ceph test cluster: " << vs_why_;                    \
		}                                                                                    \
	} while (0)

std::set<std::string> names(Backend &backend, const std::string &prefix = "")
{
	std::set<std::string> out;
	auto r = backend.list(prefix, [&](const ObjectInfo &info) { out.insert(info.name); });
	EXPECT_TRUE(r) << describe(r);
	return out;
}

// Processes whose command line names something in `dir`.
std::vector<std::string> processesIn(const std::string &dir)
{
	std::vector<std::string> out;
	for (const auto &entry : fs::directory_iterator("/proc")) {
		std::ifstream in(entry.path() / "cmdline");
		std::string line;
		if (!std::getline(in, line))
			continue;
		std::replace(line.begin(), line.end(), '\0', ' ');
		if (line.find(dir + "/") != std::string::npos)
			out.push_back(entry.path().filename().string() + ": " + line);
	}
	return out;
}

std::span<const uint8_t> bytes(const std::string &s)
{
	return {(const uint8_t *)s.data(), s.size()};
}

// Opens `url` and expects it to fail with `code` within kBounded; returns
// the message.
std::string openFails(const std::string &url, const char *code, std::chrono::seconds timeout)
{
	BackendSettings settings;
	settings.timeout = timeout;
	auto started = Clock::now();
	auto backend = openBackend(url, settings);
	auto took = Clock::now() - started;
	EXPECT_FALSE(backend) << url;
	EXPECT_EQ(codeOf(backend), code) << describe(backend);
	EXPECT_LT(took, kBounded) << describe(backend);
	return backend ? "" : backend.error().message;
}

TEST(RadosBackendTest, AMissingPoolIsNamedWithHowToCreateIt)
{
	CephCluster *cluster;
	REQUIRE_CLUSTER(cluster);
	std::string message = openFails(radosUrl("no-such-pool", "ns", cluster->confPath()), errc::kStoreUnavailable,
					std::chrono::seconds(10));
	EXPECT_NE(message.find("pool no-such-pool does not exist"), std::string::npos) << message;
	EXPECT_NE(message.find("ceph osd pool create no-such-pool"), std::string::npos) << message;
	EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(RadosBackendTest, AConfFileThatIsMissingOrNotACephConfIsNamed)
{
	virtsnap::test::TempDir dir("vs-rados");
	std::string missing = dir.file("nothing/ceph.conf");
	std::string message = openFails(radosUrl("pool", "ns", missing), errc::kInvalidParameterValue,
					std::chrono::seconds(10));
	EXPECT_NE(message.find(missing + " does not exist"), std::string::npos) << message;

	std::string garbage = dir.file("garbage.conf");
	std::ofstream(garbage) << "[global\nthis is = not = ceph\n";
	message = openFails(radosUrl("pool", "ns", garbage), errc::kInvalidParameterValue, std::chrono::seconds(10));
	EXPECT_NE(message.find(garbage), std::string::npos) << message;
}

// A port bound and not listened on: connections to it are refused, and
// nobody else can take it while the socket is open.
int deafPort(int *fd)
{
	*fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(addr);
	if (*fd < 0 || ::bind(*fd, (sockaddr *)&addr, sizeof(addr)) != 0 ||
	    ::getsockname(*fd, (sockaddr *)&addr, &len) != 0)
		return 0;
	return ntohs(addr.sin_port);
}

TEST(RadosBackendTest, AClusterWhoseMonDoesNotAnswerIsUnavailableWithinTheTimeout)
{
	// The shared cluster's conf but for the mon's address.
	virtsnap::test::TempDir dir("vs-rados");
	CephCluster *cluster;
	REQUIRE_CLUSTER(cluster);
	int fd = -1;
	int port = deafPort(&fd);
	ASSERT_NE(port, 0);
	std::string conf = dir.file("ceph.conf");
	{
		std::ifstream shared(cluster->confPath());
		std::ofstream out(conf);
		std::string deaf = "mon host = v1:127.0.0.1:" + std::to_string(port);
		for (std::string line; std::getline(shared, line);)
			out << (line.starts_with("mon host") ? deaf : line) << "\n";
	}
	std::string message = openFails(radosUrl("virtsnap-test", "ns", conf), errc::kStoreUnavailable,
					std::chrono::seconds(3));
	EXPECT_NE(message.find("no monitor of the cluster"), std::string::npos) << message;
	EXPECT_NE(message.find("within 3 s"), std::string::npos) << message;
	::close(fd);
}

// An OSD that is gone (SIGKILL: the mon still thinks it is up, as it does
// for a while after a host dies) fails each request at the timeout, and
// an open at its probe.
TEST(RadosBackendTest, AClusterWhoseOsdIsDownIsUnavailableWithinTheTimeout)
{
	std::string why;
	virtsnap::test::CephOptions options;
	options.manager = false;
	auto cluster = CephCluster::start(options, &why);
	if (!cluster) {
		if (virtsnap::test::inCi())
			FAIL() << why;
		GTEST_SKIP() << why;
	}
	ASSERT_TRUE(cluster->createPool("down", &why)) << why;
	std::string url = radosUrl("down", "ns", cluster->confPath());
	BackendSettings settings;
	settings.timeout = std::chrono::seconds(10);
	auto backend = openBackend(url, settings);
	ASSERT_TRUE(backend) << describe(backend);
	ASSERT_TRUE((*backend)->put("there", bytes("x")));
	ASSERT_TRUE(cluster->kill("osd.0", &why)) << why;

	auto started = Clock::now();
	auto got = (*backend)->get("there");
	EXPECT_EQ(codeOf(got), errc::kStoreUnavailable) << describe(got);
	EXPECT_LT(Clock::now() - started, kBounded);
	EXPECT_NE(describe(got).find("no answer within 10 s"), std::string::npos) << describe(got);
	openFails(url, errc::kStoreUnavailable, std::chrono::seconds(3));

	// And a cluster stopped leaves no daemon and no directory.
	std::string dir = fs::path(cluster->confPath()).parent_path();
	EXPECT_FALSE(processesIn(dir).empty());
	cluster.reset();
	EXPECT_FALSE(fs::exists(dir));
	EXPECT_EQ(processesIn(dir), std::vector<std::string>{});
}

// What the S3 backend's tests are given: an endpoint that answered S3 and
// a 0600 file with the user's keys, as the S3 backend reads them.
TEST(RadosBackendTest, TheClusterGatewayHasAUserAndItsKeysInA0600File)
{
	CephCluster *cluster;
	REQUIRE_CLUSTER(cluster);
	std::string why;
	const virtsnap::test::S3Gateway *gw = cluster->gateway(&why);
	ASSERT_TRUE(gw) << why;
	EXPECT_TRUE(gw->endpoint.starts_with("http://127.0.0.1:")) << gw->endpoint;
	struct stat st;
	ASSERT_EQ(::stat(gw->credentialsFile.c_str(), &st), 0) << gw->credentialsFile;
	EXPECT_EQ(st.st_mode & 0777, 0600u);
	std::ifstream in(gw->credentialsFile);
	std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
	EXPECT_EQ(text, "access-key-id = " + gw->accessKey + "\nsecret-access-key = " + gw->secretKey + "\n");
	EXPECT_FALSE(gw->accessKey.empty());
	EXPECT_FALSE(gw->secretKey.empty());
	EXPECT_EQ(cluster->gateway(&why), gw); // one gateway per cluster
}

TEST(RadosBackendTest, NamespacesKeepStoresOfOnePoolApart)
{
	CephCluster *cluster;
	REQUIRE_CLUSTER(cluster);
	std::string why;
	ASSERT_TRUE(cluster->createPool("virtsnap-plain", &why)) << why;
	auto one = openBackend(radosUrl("virtsnap-plain", "one", cluster->confPath()));
	auto two = openBackend(radosUrl("virtsnap-plain", "two", cluster->confPath()));
	auto plain = openBackend(radosUrl("virtsnap-plain", "", cluster->confPath()));
	ASSERT_TRUE(one && two && plain) << describe(one) << describe(two) << describe(plain);
	EXPECT_EQ((*one)->describe(), "rados://virtsnap-plain/one");
	EXPECT_EQ((*plain)->describe(), "rados://virtsnap-plain");
	ASSERT_TRUE((*one)->put("config.json", bytes("one")));
	ASSERT_TRUE((*plain)->put("config.json", bytes("plain")));
	EXPECT_EQ(names(**one), std::set<std::string>{"config.json"});
	EXPECT_EQ(names(**two), std::set<std::string>{});
	EXPECT_EQ(names(**plain), std::set<std::string>{"config.json"});
	EXPECT_EQ(codeOf((*two)->get("config.json")), errc::kObjectNotFound);
	auto back = (*plain)->get("config.json");
	ASSERT_TRUE(back) << describe(back);
	EXPECT_EQ(std::string(back->begin(), back->end()), "plain");
	EXPECT_EQ(codeOf((*one)->create("config.json", bytes("again"))), errc::kObjectExists);
	EXPECT_TRUE((*two)->create("config.json", bytes("two")));
}

// now() writes, stats and removes an object of its own: none is listed,
// and one that an interrupted now() left is garbage for sweepPartial().
TEST(RadosBackendTest, TheClockProbeIsNeverListedAndALeftOneIsSwept)
{
	std::unique_ptr<Backend> backend;
	std::string url;
	REQUIRE_BACKEND("rados", backend, url);
	auto before = std::chrono::system_clock::now();
	auto now = backend->now();
	ASSERT_TRUE(now) << describe(now);
	// Whole seconds, as RADOS mtimes come through the C API.
	EXPECT_LT(std::chrono::abs(*now - before), std::chrono::seconds(5));
	EXPECT_TRUE(names(*backend).empty());
	ASSERT_TRUE(backend->put(".virtsnap-clock-left", bytes("")));
	ASSERT_TRUE(backend->put("kept", bytes("x")));
	EXPECT_EQ(names(*backend), std::set<std::string>{"kept"});
	std::this_thread::sleep_for(std::chrono::milliseconds(1100)); // older than now() by a whole second
	auto dry = backend->sweepPartial(std::chrono::seconds(0), true);
	ASSERT_TRUE(dry) << describe(dry);
	EXPECT_EQ(dry->objects, 1u);
	EXPECT_TRUE(backend->stat(".virtsnap-clock-left"));
	auto swept = backend->sweepPartial(std::chrono::seconds(0), false);
	ASSERT_TRUE(swept) << describe(swept);
	EXPECT_EQ(swept->objects, 1u);
	EXPECT_EQ(codeOf(backend->stat(".virtsnap-clock-left")), errc::kObjectNotFound);
	EXPECT_EQ(names(*backend), std::set<std::string>{"kept"});
}

// One write carries one object: above what the OSDs take in one write, a
// put fails with a message that says so, and nothing is left.
TEST(RadosBackendTest, AnObjectLargerThanOneWriteIsRefusedWhole)
{
	std::unique_ptr<Backend> backend;
	std::string url;
	REQUIRE_BACKEND("rados", backend, url);
	Bytes huge(100u << 20, 7);
	auto r = backend->put("huge", huge);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kInvalidParameterValue) << describe(r);
	EXPECT_NE(r.error().message.find("osd_max_write_size"), std::string::npos) << describe(r);
	EXPECT_EQ(codeOf(backend->stat("huge")), errc::kObjectNotFound);
}

} // namespace
} // namespace virtsnap::store::test
