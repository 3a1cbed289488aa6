// What the contract suite cannot reach on S3: refusals and failures that
// must come back as one clear line within bounded time (wrong credentials,
// a missing bucket, nobody listening, an endpoint that never answers, a
// credentials file others may read), retries of 503, and names that need
// encoding. They run against the test cluster's radosgw (throttled, for
// its 503 SlowDown) and against a tiny HTTP server in the test that answers
// as told (503 a number of times, a listing in pages, silence).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "store/backend_url.h"
#include "store/s3_xml.h"
#include "store_test_util.h"
#include "tests/support/backends.h"
#include "tests/support/ceph_cluster.h"
#include "tests/support/test_env.h"

namespace virtsnap::store::test {
namespace {

using Clock = std::chrono::steady_clock;

std::span<const uint8_t> bytes(const std::string &s)
{
	return {(const uint8_t *)s.data(), s.size()};
}

std::string writeCredentials(const virtsnap::test::TempDir &dir, const std::string &text, mode_t mode)
{
	std::string path = dir.file("credentials");
	{
		std::ofstream out(path, std::ios::trunc);
		out << text;
	}
	EXPECT_EQ(::chmod(path.c_str(), mode), 0);
	return path;
}

// A listening socket on 127.0.0.1 and its port; closed with the object.
struct Listener {
	int fd = -1;
	int port = 0;

	explicit Listener(int backlog)
	{
		fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sockaddr_in addr{};
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof addr;
		EXPECT_EQ(::bind(fd, (sockaddr *)&addr, len), 0);
		EXPECT_EQ(::getsockname(fd, (sockaddr *)&addr, &len), 0);
		port = ntohs(addr.sin_port);
		if (backlog >= 0) {
			EXPECT_EQ(::listen(fd, backlog), 0);
		}
	}
	~Listener() { ::close(fd); }
	std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port); }
};

// An HTTP/1.1 server that answers the n-th request (from 0) with what
// `answer` says, one request per connection, and keeps what it was sent.
class FakeS3
{
public:
	using Answer = std::function<std::string(int n, const std::string &request)>;

	explicit FakeS3(Answer answer) : listener_(16), answer_(std::move(answer))
	{
		thread_ = std::thread([this] { serve(); });
	}
	~FakeS3()
	{
		::shutdown(listener_.fd, SHUT_RDWR);
		thread_.join();
	}

	std::string endpoint() const { return listener_.endpoint(); }
	std::vector<std::string> requests()
	{
		std::lock_guard lock(mutex_);
		return requests_;
	}

	static std::string reply(int status, const std::string &reason, const std::string &body = "")
	{
		return "HTTP/1.1 " + std::to_string(status) + " " + reason +
		       "\r\nDate: Fri, 04 Dec 2026 20:17:21 GMT\r\nConnection: close\r\nContent-Length: " +
		       std::to_string(body.size()) + "\r\n\r\n" + body;
	}
	static std::string slowDown()
	{
		return reply(503, "Slow Down",
			     "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request "
			     "rate.</Message></Error>");
	}

private:
	void serve()
	{
		for (int n = 0;; n++) {
			int conn = ::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC);
			if (conn < 0)
				return;
			std::string request = readRequest(conn);
			{
				std::lock_guard lock(mutex_);
				requests_.push_back(request);
			}
			std::string out = answer_(n, request);
			(void)!::write(conn, out.data(), out.size());
			::close(conn);
		}
	}

	// Headers and body; "Expect: 100-continue" is answered, as curl sends
	// it with every PUT that has a body.
	static std::string readRequest(int conn)
	{
		std::string in;
		char buf[65536];
		size_t headerEnd;
		while ((headerEnd = in.find("\r\n\r\n")) == std::string::npos) {
			ssize_t n = ::read(conn, buf, sizeof buf);
			if (n <= 0)
				return in;
			in.append(buf, size_t(n));
		}
		std::string lower = in.substr(0, headerEnd);
		for (char &c : lower)
			c = char(std::tolower((unsigned char)c));
		size_t length = 0;
		if (size_t at = lower.find("\r\ncontent-length:"); at != std::string::npos)
			length = std::stoul(lower.substr(at + 17));
		if (lower.find("\r\nexpect: 100-continue") != std::string::npos)
			(void)!::write(conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		while (in.size() < headerEnd + 4 + length) {
			ssize_t n = ::read(conn, buf, sizeof buf);
			if (n <= 0)
				break;
			in.append(buf, size_t(n));
		}
		return in;
	}

	Listener listener_;
	Answer answer_;
	std::mutex mutex_;
	std::vector<std::string> requests_;
	std::thread thread_;
};

constexpr const char *kFakeSecret = "fake-secret-do-not-show";

std::string credentials()
{
	return std::string("access-key-id = FAKEKEY\nsecret-access-key = ") + kFakeSecret + "\n";
}

class S3FakeTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		settings_.s3CredentialsFile = writeCredentials(dir_, credentials(), 0600);
		settings_.timeout = std::chrono::seconds(5);
	}

	std::string urlOf(const FakeS3 &server) { return "s3://bucket/pre?endpoint=" + server.endpoint(); }

	virtsnap::test::TempDir dir_{"vs-s3"};
	BackendSettings settings_;
};

TEST_F(S3FakeTest, A503IsRetriedWithBackoffAndThenSucceeds)
{
	// Request 0 is open()'s look at the bucket; then a PUT that meets
	// SlowDown twice.
	FakeS3 server([](int n, const std::string &) {
		return n == 1 || n == 2 ? FakeS3::slowDown() : FakeS3::reply(200, "OK");
	});
	auto backend = openBackend(urlOf(server), settings_);
	ASSERT_TRUE(backend) << describe(backend);
	auto began = Clock::now();
	auto put = (*backend)->put("packs/x", bytes("payload"));
	ASSERT_TRUE(put) << describe(put);
	EXPECT_GE(Clock::now() - began, std::chrono::milliseconds(300)) << "two backoffs of at least 100 and 200 ms";
	auto requests = server.requests();
	ASSERT_EQ(requests.size(), 4u);
	for (size_t i = 1; i < 4; i++) {
		EXPECT_EQ(requests[i].rfind("PUT /bucket/pre/packs/x HTTP/1.1\r\n", 0), 0u) << requests[i];
		// Every attempt signed anew, with the payload's hash (radosgw
		// refuses SigV4 without it), and never the secret itself.
		EXPECT_NE(requests[i].find("Authorization: AWS4-HMAC-SHA256 Credential=FAKEKEY/"), std::string::npos);
		EXPECT_NE(requests[i].find(toHex(crypto::sha256(bytes("payload")))), std::string::npos) << requests[i];
		EXPECT_EQ(requests[i].find(kFakeSecret), std::string::npos);
		EXPECT_NE(requests[i].find("\r\n\r\npayload"), std::string::npos);
	}
	std::string emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	EXPECT_NE(requests[0].find("x-amz-content-sha256: " + emptyHash), std::string::npos)
		<< "a bodiless request carries the empty body's hash";
}

TEST_F(S3FakeTest, AnEndpointThatKeepsFailingIsUnavailableAfterAFewSeconds)
{
	FakeS3 server([](int n, const std::string &) {
		return n == 0 ? FakeS3::reply(200, "OK") : FakeS3::slowDown();
	});
	auto backend = openBackend(urlOf(server), settings_);
	ASSERT_TRUE(backend) << describe(backend);
	auto began = Clock::now();
	auto got = (*backend)->get("snapshots/s1");
	auto took = Clock::now() - began;
	ASSERT_FALSE(got);
	EXPECT_EQ(got.error().code, errc::kStoreUnavailable) << describe(got);
	EXPECT_NE(got.error().message.find("SlowDown"), std::string::npos) << describe(got);
	EXPECT_LT(took, std::chrono::seconds(5));
	EXPECT_LE(server.requests().size(), 6u) << "a bounded number of attempts";
	EXPECT_GE(server.requests().size(), 3u);
}

TEST_F(S3FakeTest, ListingFollowsContinuationTokensAndSignsAnEncodedSortedQuery)
{
	auto page = [](const std::string &keys, const std::string &token) {
		return "<?xml version=\"1.0\"?>"
		       "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" + keys +
		       "<IsTruncated>" + (token.empty() ? "false" : "true") + "</IsTruncated>" +
		       (token.empty() ? "" : "<NextContinuationToken>" + token + "</NextContinuationToken>") +
		       "</ListBucketResult>";
	};
	auto object = [](const std::string &key) {
		return "<Contents><Key>" + key +
		       "</Key><LastModified>2026-12-04T20:17:21.250Z</LastModified><Size>7</Size></Contents>";
	};
	FakeS3 server([&](int n, const std::string &) {
		if (n == 1)
			return FakeS3::reply(200, "OK", page(object("pre/packs/a") + object("pre/packs/b"), "t/1+2="));
		if (n == 2)
			return FakeS3::reply(200, "OK", page(object("pre/packs/c"), ""));
		return FakeS3::reply(200, "OK");
	});
	auto backend = openBackend(urlOf(server), settings_);
	ASSERT_TRUE(backend) << describe(backend);
	std::vector<ObjectInfo> seen;
	auto r = (*backend)->list("packs/", [&](const ObjectInfo &info) { seen.push_back(info); });
	ASSERT_TRUE(r) << describe(r);
	ASSERT_EQ(seen.size(), 3u);
	EXPECT_EQ(seen[0].name, "packs/a");
	EXPECT_EQ(seen[2].name, "packs/c");
	EXPECT_EQ(seen[1].size, 7u);
	EXPECT_EQ(seen[0].modified.time_since_epoch() % std::chrono::seconds(1), std::chrono::milliseconds(250));
	auto requests = server.requests();
	ASSERT_EQ(requests.size(), 3u);
	// SigV4 wants the query sorted and %-encoded; libcurl 7.88 signs it as
	// sent, so the backend sends it that way.
	EXPECT_EQ(requests[1].rfind("GET /bucket?list-type=2&prefix=pre%2Fpacks%2F HTTP/1.1", 0), 0u) << requests[1];
	EXPECT_EQ(requests[2].rfind("GET /bucket?continuation-token=t%2F1%2B2%3D&list-type=2&prefix=pre%2Fpacks%2F ", 0),
		  0u)
		<< requests[2];
}

TEST_F(S3FakeTest, NobodyListeningIsUnavailableQuickly)
{
	std::string endpoint;
	{
		Listener closed(-1); // bound, never listening: connections are refused
		endpoint = closed.endpoint();
		auto began = Clock::now();
		auto backend = openBackend("s3://bucket?endpoint=" + endpoint, settings_);
		auto took = Clock::now() - began;
		ASSERT_FALSE(backend);
		EXPECT_EQ(backend.error().code, errc::kStoreUnavailable) << describe(backend);
		EXPECT_NE(backend.error().message.find(endpoint), std::string::npos) << describe(backend);
		EXPECT_LT(took, std::chrono::seconds(10)) << "retrying a refused connection takes a few seconds at most";
	}
}

TEST_F(S3FakeTest, AnEndpointThatNeverAnswersTimesOutInsteadOfHanging)
{
	Listener silent(8); // connections are accepted by the kernel, never answered
	settings_.timeout = std::chrono::seconds(2);
	auto began = Clock::now();
	auto backend = openBackend("s3://bucket?endpoint=" + silent.endpoint(), settings_);
	auto took = Clock::now() - began;
	ASSERT_FALSE(backend);
	EXPECT_EQ(backend.error().code, errc::kStoreUnavailable) << describe(backend);
	EXPECT_LT(took, std::chrono::seconds(10));
	EXPECT_GE(took, std::chrono::seconds(2));
}

TEST_F(S3FakeTest, ACredentialsFileOthersCanReadIsRefused)
{
	FakeS3 server([](int, const std::string &) { return FakeS3::reply(200, "OK"); });
	settings_.s3CredentialsFile = writeCredentials(dir_, credentials(), 0644);
	auto backend = openBackend(urlOf(server), settings_);
	ASSERT_FALSE(backend);
	EXPECT_EQ(backend.error().code, errc::kKeyFile);
	EXPECT_NE(backend.error().message.find(settings_.s3CredentialsFile), std::string::npos) << describe(backend);
	EXPECT_NE(backend.error().message.find("0644"), std::string::npos) << describe(backend);
	EXPECT_EQ(backend.error().toString().find('\n'), std::string::npos) << "one line";
	EXPECT_TRUE(server.requests().empty()) << "refused before anything is sent";
}

TEST_F(S3FakeTest, CredentialsFilesTakeCommentsAndNameBadLinesWithoutQuotingThem)
{
	FakeS3 server([](int, const std::string &) { return FakeS3::reply(200, "OK"); });
	std::string text = "# for the store\n\n  access-key-id=FAKEKEY  \nsecret-access-key =  ";
	text += kFakeSecret;
	settings_.s3CredentialsFile = writeCredentials(dir_, text + "\n", 0600);
	auto backend = openBackend(urlOf(server), settings_);
	ASSERT_TRUE(backend) << describe(backend);
	EXPECT_NE(server.requests().at(0).find("Credential=FAKEKEY/"), std::string::npos);

	settings_.s3CredentialsFile =
		writeCredentials(dir_, std::string("access-key-id = FAKEKEY\n") + kFakeSecret + "\n", 0600);
	backend = openBackend(urlOf(server), settings_);
	ASSERT_FALSE(backend);
	EXPECT_EQ(backend.error().code, errc::kKeyFile);
	EXPECT_NE(backend.error().message.find("line 2"), std::string::npos) << describe(backend);
	EXPECT_EQ(backend.error().message.find(kFakeSecret), std::string::npos) << describe(backend);

	settings_.s3CredentialsFile = writeCredentials(dir_, "access-key-id = FAKEKEY\n", 0600);
	backend = openBackend(urlOf(server), settings_);
	ASSERT_FALSE(backend);
	EXPECT_EQ(backend.error().code, errc::kKeyFile) << describe(backend);
}

// Object Lock retention only ever grows: a later time, or compliance over
// governance (with the bypass S3 wants for that change); never a PUT that
// would shorten or weaken what the object has.
TEST_F(S3FakeTest, RetentionIsOnlyEverExtendedOrMadeStricter)
{
	auto retention = [](const std::string &mode, const std::string &until) {
		return FakeS3::reply(200, "OK",
				     "<Retention><Mode>" + mode + "</Mode><RetainUntilDate>" + until +
					     "</RetainUntilDate></Retention>");
	};
	FakeS3 server([&](int n, const std::string &) {
		switch (n) {
		case 1:
			return FakeS3::reply(200, "OK", "<ObjectLockConfiguration><ObjectLockEnabled>Enabled"
							"</ObjectLockEnabled></ObjectLockConfiguration>");
		case 2: // a: compliance, later than asked
			return retention("COMPLIANCE", "2030-01-02T00:00:00.000Z");
		case 3: // b: governance, earlier than asked
			return retention("GOVERNANCE", "2029-12-31T00:00:00Z");
		case 5: // c: none yet (radosgw's answer)
			return FakeS3::reply(404, "Not Found",
					     "<Error><Code>ObjectLockConfigurationNotFoundError</Code></Error>");
		default:
			return FakeS3::reply(200, "OK");
		}
	});
	auto backend = openBackend(urlOf(server), settings_);
	ASSERT_TRUE(backend) << describe(backend);
	auto until = *s3::parseIsoTime("2030-01-01T00:00:00Z");
	ASSERT_TRUE((*backend)->retain("a", RetentionMode::Governance, until));
	ASSERT_TRUE((*backend)->retain("b", RetentionMode::Compliance, until));
	ASSERT_TRUE((*backend)->retain("c", RetentionMode::Governance, until));
	auto requests = server.requests();
	ASSERT_EQ(requests.size(), 7u) << "a PUT for a, which had more already";
	EXPECT_EQ(requests[1].rfind("GET /bucket?object-lock= HTTP/1.1", 0), 0u) << requests[1];
	EXPECT_EQ(requests[2].rfind("GET /bucket/pre/a?retention= HTTP/1.1", 0), 0u) << requests[2];
	EXPECT_EQ(requests[4].rfind("PUT /bucket/pre/b?retention= HTTP/1.1", 0), 0u) << requests[4];
	EXPECT_NE(requests[4].find("<Mode>COMPLIANCE</Mode><RetainUntilDate>2030-01-01T00:00:00Z<"), std::string::npos)
		<< requests[4];
	EXPECT_NE(requests[4].find("x-amz-bypass-governance-retention: true"), std::string::npos) << requests[4];
	EXPECT_NE(requests[4].find("content-md5: "), std::string::npos) << requests[4];
	EXPECT_NE(requests[6].find("<Mode>GOVERNANCE</Mode>"), std::string::npos) << requests[6];
	EXPECT_EQ(requests[6].find("bypass"), std::string::npos) << requests[6];
}

// On the test cluster's radosgw.
class S3RadosgwTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		REQUIRE_BACKEND("s3", backend_, url_);
		auto parsed = parseStoreUrl(url_);
		ASSERT_TRUE(parsed) << describe(parsed);
		url = *parsed;
		settings_ = virtsnap::test::backendNamed("s3")->settings;
	}

	std::unique_ptr<Backend> backend_;
	std::string url_;
	StoreUrl url;
	BackendSettings settings_;
	virtsnap::test::TempDir dir_{"vs-s3"};
};

TEST_F(S3RadosgwTest, WrongCredentialsAreAccessDeniedNamingTheBucket)
{
	std::ifstream in(settings_.s3CredentialsFile);
	std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
	std::string accessKeyLine = text.substr(text.find("access-key-id"));
	accessKeyLine = accessKeyLine.substr(0, accessKeyLine.find('\n'));
	for (std::string wrong : {accessKeyLine + "\nsecret-access-key = not-the-secret\n",
				  std::string("access-key-id = NOSUCHKEY\nsecret-access-key = not-the-secret\n")}) {
		BackendSettings settings = settings_;
		settings.s3CredentialsFile = writeCredentials(dir_, wrong, 0600);
		auto backend = openBackend(url_, settings);
		ASSERT_FALSE(backend) << wrong;
		EXPECT_EQ(backend.error().code, errc::kAccessDenied) << describe(backend);
		EXPECT_NE(backend.error().message.find(url.bucket), std::string::npos) << describe(backend);
		EXPECT_NE(backend.error().message.find("credentials"), std::string::npos) << describe(backend);
		EXPECT_EQ(backend.error().message.find("not-the-secret"), std::string::npos) << describe(backend);
	}
}

TEST_F(S3RadosgwTest, AMissingBucketIsNamedAsSuch)
{
	auto backend = openBackend("s3://vs-no-such-bucket/p?endpoint=" + url.endpoint, settings_);
	ASSERT_FALSE(backend);
	EXPECT_EQ(backend.error().code, errc::kStoreUnavailable) << describe(backend);
	EXPECT_NE(backend.error().message.find("vs-no-such-bucket"), std::string::npos) << describe(backend);
	EXPECT_NE(backend.error().message.find("does not exist"), std::string::npos) << describe(backend);
}

TEST_F(S3RadosgwTest, NamesThatNeedEncodingRoundTrip)
{
	std::set<std::string> names = {"odd/a b",        "odd/plus+sign", "odd/eq=amp&q?",
				       "odd/percent%41", "odd/ünï",       "odd/~tilde*"};
	for (const std::string &name : names)
		ASSERT_TRUE(backend_->put(name, bytes(name))) << name;
	for (const std::string &name : names) {
		auto got = backend_->get(name);
		ASSERT_TRUE(got) << name << ": " << describe(got);
		EXPECT_EQ(std::string(got->begin(), got->end()), name);
		auto info = backend_->stat(name);
		ASSERT_TRUE(info) << name << ": " << describe(info);
		EXPECT_EQ(info->size, name.size());
	}
	std::set<std::string> listed;
	ASSERT_TRUE(backend_->list("odd/", [&](const ObjectInfo &info) { listed.insert(info.name); }));
	EXPECT_EQ(listed, names);
	for (const std::string &name : names)
		EXPECT_TRUE(backend_->remove(name)) << name;
}

// create() is If-None-Match: *, which radosgw 16 checks with an exclusive
// create of the object's head: also when the bodies are large enough to
// have tail objects (above 4 MiB), written before the head.
TEST_F(S3RadosgwTest, OneOfEightCreatorsWinsAlsoWithLargeBodies)
{
	for (int round = 0; round < 4; round++) {
		std::string name = "race/large-" + std::to_string(round);
		std::atomic<int> won{0}, lost{0};
		std::vector<std::thread> racers;
		for (int i = 0; i < 8; i++)
			racers.emplace_back([&, i] {
				Bytes data(6u << 20, uint8_t('a' + i));
				auto r = backend_->create(name, data);
				if (r)
					won++;
				else if (r.error().code == errc::kObjectExists)
					lost++;
				else
					ADD_FAILURE() << describe(r);
			});
		for (std::thread &t : racers)
			t.join();
		EXPECT_EQ(won, 1) << name;
		EXPECT_EQ(lost, 7) << name;
		auto got = backend_->get(name);
		ASSERT_TRUE(got) << describe(got);
		ASSERT_EQ(got->size(), 6u << 20);
		EXPECT_TRUE(std::all_of(got->begin(), got->end(), [&](uint8_t c) { return c == got->front(); }))
			<< "one racer's bytes, whole";
		EXPECT_TRUE(backend_->remove(name));
	}
}

// radosgw answers 503 SlowDown beyond rgw_max_concurrent_requests, which it
// takes at run time: at 1, bursts of concurrent writes meet SlowDown (its
// log says so) and still all land, through the retries.
TEST_F(S3RadosgwTest, RadosgwsSlowDownIsRetriedThrough)
{
	REQUIRE_TOOL("ceph");
	std::string why;
	virtsnap::test::CephCluster *cluster = virtsnap::test::CephCluster::shared(&why);
	ASSERT_TRUE(cluster) << why;
	// A client daemon's admin socket has its pid in its name.
	std::filesystem::path dir = std::filesystem::path(cluster->confPath()).parent_path();
	std::string socket;
	for (const auto &entry : std::filesystem::directory_iterator(dir)) {
		std::string file = entry.path().filename();
		if (file.starts_with("ceph-client.rgw.r.") && file.ends_with(".asok"))
			socket = entry.path();
	}
	ASSERT_FALSE(socket.empty()) << "no admin socket of radosgw in " << dir;
	auto setLimit = [&](const std::string &limit) {
		std::string out;
		std::vector<std::string> argv = {"ceph", "--admin-daemon", socket, "config", "set",
						 "rgw_max_concurrent_requests", limit};
		int status = virtsnap::test::runCommand(argv, &out);
		EXPECT_EQ(status, 0) << out;
		return status == 0;
	};
	std::string log = dir / "client.rgw.r.log";
	auto slowDowns = [&] {
		std::ifstream in(log);
		int n = 0;
		for (std::string line; std::getline(in, line);)
			n += line.find("http_status=503") != std::string::npos;
		return n;
	};
	int before = slowDowns();
	ASSERT_TRUE(setLimit("1"));
	Bytes data = randomData(64 << 10, 7);
	for (int burst = 0; burst < 10 && slowDowns() == before; burst++) {
		std::atomic<int> failed{0};
		std::atomic<bool> go{false};
		std::vector<std::thread> writers;
		for (int i = 0; i < 6; i++)
			writers.emplace_back([&, i] {
				while (!go)
					std::this_thread::yield();
				std::string name = "burst/" + std::to_string(burst) + "-" + std::to_string(i);
				auto r = backend_->put(name, data);
				if (!r) {
					failed++;
					ADD_FAILURE() << describe(r);
				}
			});
		go = true;
		for (std::thread &t : writers)
			t.join();
		EXPECT_EQ(failed, 0) << "burst " << burst;
	}
	EXPECT_TRUE(setLimit("1024"));
	EXPECT_GT(slowDowns(), before) << "radosgw never said SlowDown: " << log;
}

TEST_F(S3RadosgwTest, ARemovedObjectCanBeCreatedAgainAndTheClockIsTheServers)
{
	ASSERT_TRUE(backend_->create("once", bytes("one")));
	EXPECT_EQ(codeOf(backend_->create("once", bytes("two"))), errc::kObjectExists);
	ASSERT_TRUE(backend_->remove("once"));
	ASSERT_TRUE(backend_->create("once", bytes("three")));
	auto now = backend_->now();
	ASSERT_TRUE(now) << describe(now);
	auto info = backend_->stat("once");
	ASSERT_TRUE(info) << describe(info);
	// The same host here, so the server's clock is ours, to the second
	// its Date header has.
	EXPECT_LT(std::chrono::abs(*now - std::chrono::system_clock::now()), std::chrono::seconds(5));
	EXPECT_LE(info->modified, *now + std::chrono::seconds(1));
	auto swept = backend_->sweepPartial(std::chrono::seconds(0), false);
	ASSERT_TRUE(swept) << describe(swept);
	EXPECT_EQ(swept->objects, 0u) << "single PUTs leave nothing behind";
}

} // namespace
} // namespace virtsnap::store::test
