// virtsnapd under load: ten clients send fifty requests at once, five times,
// across five volumes of two QEMU instances: creates, describes, tags,
// deletes, waits and a gc. Every request is answered once and in time, the
// pending limit holds whenever it is looked at, the store and the catalog
// agree afterwards, and the daemon's memory does not grow from one round to
// the next.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli_fixture.h"
#include "tests/support/daemon_connection.h"
#include "tests/support/qemu_instance.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Under a sanitizer (which builds the daemon too), freed memory waits in a
// quarantine and shadow memory grows with use: RSS says nothing of the
// daemon's own, so it is printed but not held to a bound.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Enough rounds that a leak outgrows what the malloc arenas may (below).
constexpr int kRounds = 9;
constexpr int kClients = 10;
constexpr int kRequestsPerClient = 5;
constexpr size_t kPendingLimit = 5; // per volume (README, "Limits")
// Any request, a create or a wait included, answers within this.
constexpr auto kAnswerBound = 120s;

struct Volume {
	std::string qmpSocket;
	std::string disk;
};

struct Answer {
	std::string command;
	Json reply;
	std::chrono::milliseconds latency{0};
};

class DaemonLoadTest : public CliTest
{
protected:
	DaemonLoadTest() : CliTest("vs-load") { cliSocket_ = socket_; }

	void SetUp() override
	{
		REQUIRE_QEMU();
		ASSERT_EQ(cli({"init"}).status, 0);
		ASSERT_NO_FATAL_FAILURE(startInstance(0, 3));
		ASSERT_NO_FATAL_FAILURE(startInstance(1, 2));
		// One transfer at a time, so that creates queue up to the limit.
		ASSERT_TRUE(daemon_.start({"--max-parallel-jobs", "1"}));
	}

	void TearDown() override { daemon_.stop(); }

	// An instance with `disks` disks of 8 MiB of random data each.
	void startInstance(int n, int disks)
	{
		QemuOptions opts;
		for (int d = 0; d < disks; d++) {
			std::string raw = tmp_.file("i" + std::to_string(n) + "d" + std::to_string(d) + ".raw");
			{
				std::ofstream out(raw, std::ios::binary);
				std::mt19937_64 rng(uint64_t(n * 10 + d + 1));
				std::vector<uint8_t> buf(8 << 20);
				fillRandom(rng, buf);
				out.write(reinterpret_cast<const char *>(buf.data()), std::streamsize(buf.size()));
			}
			fs::resize_file(raw, 32 << 20);
			std::string qcow = raw.substr(0, raw.size() - 4) + ".qcow2";
			std::string error;
			ASSERT_TRUE(convertImage(raw, "raw", qcow, "qcow2", &error)) << error;
			opts.disks.push_back({qcow, "qcow2", std::string("vd") + char('a' + d)});
		}
		opts.name = "vs-load-" + std::to_string(n);
		std::string error;
		vms_.push_back(QemuInstance::start(opts, &error));
		ASSERT_TRUE(vms_.back()) << error;
		for (int d = 0; d < disks; d++)
			volumes_.push_back({vms_.back()->qmpSocket(), std::string("vd") + char('a' + d)});
	}

	static std::string request(const std::string &command, const std::map<std::string, std::vector<std::string>> &opts)
	{
		Json options = Json::object();
		for (const auto &[k, values] : opts) {
			Json list = Json::array();
			for (const std::string &v : values)
				list.append(Json::string(v));
			options.set(k, list);
		}
		Json r = Json::object();
		r.set("command", Json::string(command));
		r.set("options", options);
		return r.dump() + "\n";
	}

	// Client `c`'s request `i` of round `round`; `mine` holds the ids its
	// creates got, for the tags, deletes and waits that follow.
	std::string nextRequest(int round, int c, int i, std::vector<std::string> &mine)
	{
		const Volume &v = volumes_[size_t(c % int(volumes_.size()))];
		std::string token = "r" + std::to_string(round) + "c" + std::to_string(c) + "i" + std::to_string(i);
		switch ((c + i) % 5) {
		case 0:
		case 1:
		case 2:
			// Six creates a volume a round, one more than its limit.
			return request("create-snapshot", {{"qmp-socket", {v.qmpSocket}},
							   {"disk", {v.disk}},
							   {"client-token", {token}},
							   {"tag", {"client=" + std::to_string(c)}}});
		case 3:
			if (c == 0)
				return request("gc", {{"grace-seconds", {"0"}}});
			if (c % 2 == 1 && !mine.empty())
				return request("create-tags", {{"resource", {mine.back()}}, {"tag", {"seen=" + token}}});
			if (mine.size() > 1) {
				std::string victim = mine.front();
				mine.erase(mine.begin());
				return request("delete-snapshot", {{"snapshot-id", {victim}}});
			}
			return request("describe-volumes", {});
		default:
			if (!mine.empty())
				return request("wait-snapshot-completed", {{"snapshot-id", {mine.back()}}, {"timeout", {"100"}}});
			return request("describe-snapshots", {{"filter", {"Name=tag:client,Values=" + std::to_string(c)}}});
		}
	}

	// One round: every client on its own connection, its requests in turn.
	std::vector<Answer> round(int round)
	{
		std::vector<Answer> answers;
		std::mutex mutex;
		std::vector<std::thread> clients;
		for (int c = 0; c < kClients; c++)
			clients.emplace_back([&, c] {
				DaemonConnection conn(socket_);
				std::vector<std::string> mine;
				for (int i = 0; i < kRequestsPerClient; i++) {
					std::string line = nextRequest(round, c, i, mine);
					auto start = Clock::now();
					Answer a{Json::parse(line)->getString("command").value_or(""), Json(), {}};
					std::string reply = conn.send(line) ? conn.readLine(kAnswerBound) : "";
					a.latency = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
					a.reply = Json::parse(reply).value_or(Json());
					if (a.command == "create-snapshot" && a.reply.getBool("ok").value_or(false))
						mine.push_back(a.reply.get("result").getString("SnapshotId").value_or(""));
					std::lock_guard lock(mutex);
					answers.push_back(a);
				}
			});
		for (std::thread &t : clients)
			t.join();
		return answers;
	}

	// The most pending snapshots of any one volume, as describe-snapshots
	// shows them, sampled until `stop`.
	size_t samplePending(const std::atomic<bool> &stop)
	{
		size_t most = 0;
		DaemonConnection conn(socket_);
		std::string line = request("describe-snapshots", {{"filter", {"Name=status,Values=pending"}}});
		while (!stop) {
			std::string reply = conn.send(line) ? conn.readLine(kAnswerBound) : "";
			auto doc = Json::parse(reply);
			if (!doc)
				break;
			std::map<std::string, size_t> perVolume;
			Json snaps = doc->get("result").get("Snapshots");
			for (size_t i = 0; i < snaps.size(); i++)
				most = std::max(most, ++perVolume[snaps.at(i).getString("VolumeId").value_or("")]);
			std::this_thread::sleep_for(50ms);
		}
		return most;
	}

	std::set<std::string> completedIds()
	{
		CliResult r = cli({"describe-snapshots", "--filter", "Name=status,Values=completed"});
		EXPECT_EQ(r.status, 0) << r.err;
		std::set<std::string> ids;
		Json snaps = r.json().get("Snapshots");
		for (size_t i = 0; i < snaps.size(); i++)
			ids.insert(snaps.at(i).getString("SnapshotId").value_or(""));
		return ids;
	}

	std::string socket_ = tmp_.file("virtsnapd.sock");
	std::vector<std::unique_ptr<QemuInstance>> vms_;
	std::vector<Volume> volumes_;
	// Declared after vms_, so stopped before QEMU goes.
	Virtsnapd daemon_{daemonOptions(socket_)};
};

// The codes a request of this mix may be refused with under load.
const std::set<std::string> kExpectedRefusals = {"ConcurrentSnapshotLimitExceeded", "IncorrectState",
						 "InvalidSnapshot.NotFound"};

TEST_F(DaemonLoadTest, FiftyConcurrentRequestsARoundAreEachAnsweredOnceWithinTheLimits)
{
	std::vector<Answer> all;
	std::set<std::string> created;
	long rssAfter[kRounds] = {};
	size_t mostPending = 0;
	for (int r = 0; r < kRounds; r++) {
		std::atomic<bool> stop{false};
		size_t sampled = 0;
		std::thread sampler([&] { sampled = samplePending(stop); });
		std::vector<Answer> answers = round(r);
		stop = true;
		sampler.join();
		mostPending = std::max(mostPending, sampled);
		ASSERT_EQ(answers.size(), size_t(kClients * kRequestsPerClient));
		std::vector<std::string> thisRound;
		for (const Answer &a : answers) {
			ASSERT_TRUE(a.reply.has("ok")) << a.command << ": no answer within the bound";
			if (!a.reply.getBool("ok").value_or(false)) {
				std::string code = a.reply.get("error").getString("code").value_or("");
				bool gcInFlight = a.command == "gc" && code == "IncorrectState";
				EXPECT_TRUE(kExpectedRefusals.count(code) || gcInFlight) << a.command << ": " << a.reply.dump();
			} else if (a.command == "create-snapshot") {
				std::string id = a.reply.get("result").getString("SnapshotId").value_or("");
				EXPECT_TRUE(created.insert(id).second) << id << " answered to two creates";
				thisRound.push_back(id);
			}
			all.push_back(a);
		}
		// Settle: every pending snapshot ends before the next round.
		for (const std::string &id : thisRound)
			cli({"wait-snapshot-completed", "--snapshot-id", id, "--timeout", "120"});
		rssAfter[r] = procStatusField(daemon_.pid(), "VmRSS");
	}
	EXPECT_LE(mostPending, kPendingLimit);
	size_t refused = std::count_if(all.begin(), all.end(), [](const Answer &a) {
		return a.reply.get("error").getString("code") == "ConcurrentSnapshotLimitExceeded";
	});
	EXPECT_GT(refused, 0u) << "no create met the limit: the test did not load it";
	EXPECT_GT(created.size(), 10u) << "too few creates went through for the test to mean much";

	std::vector<long> latencies;
	for (const Answer &a : all)
		latencies.push_back(long(a.latency.count()));
	std::sort(latencies.begin(), latencies.end());
	long p99 = latencies[latencies.size() * 99 / 100];
	long peak = procStatusField(daemon_.pid(), "VmHWM");
	std::string rss;
	for (long kb : rssAfter)
		rss += (rss.empty() ? "" : ", ") + std::to_string(kb);
	std::printf("load: %zu requests, %zu snapshots created, %zu creates refused at the limit, p99 %ld ms, max "
		    "%ld ms, most pending on a volume %zu, RSS after each round %s kB, peak %ld kB\n",
		    all.size(), created.size(), refused, p99, latencies.back(), mostPending, rss.c_str(), peak);
	// Flat: bounded, not growing with the rounds. Each of virtsnapd's
	// four malloc arenas (main.cc caps them) may grow once, some 10 MiB,
	// when a round first lands on it, and with other tests beside this
	// one three did after the first round (+33 MiB over four rounds). A
	// leak, or arenas without that cap, grew RSS some 10 MiB a round: 80
	// over these eight.
	if (!kSanitized) {
		EXPECT_LT(rssAfter[kRounds - 1] - rssAfter[0], 48 * 1024) << "kB";
	}

	// The catalog and the store agree: a catalog rebuilt from the store's
	// manifests lists the same completed snapshots, and they verify.
	std::set<std::string> listed = completedIds();
	daemon_.stop();
	CliResult verified = cli({"verify"});
	EXPECT_EQ(verified.status, 0) << verified.out << verified.err;
	ASSERT_EQ(cli({"catalog", "rebuild"}).status, 0);
	EXPECT_EQ(completedIds(), listed);
}

} // namespace
} // namespace virtsnap::test
