// NbdReader (engine/nbd_reader.h) against a real NBD server, nbdkit, that
// the test slows down (its delay filter) or stops (SIGSTOP, as a stopped
// QEMU's NBD server is): every request, the handshake included, fails with
// one clear error within the answer timeout, and a copy whose reads never
// come back ends without waiting for them and without leaking its buffers
// (the ASan build's LeakSanitizer would see a leaked pool). The data is
// nbdkit's pattern plugin, checked against the pattern computed here.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "core/bytes.h"
#include "core/socket_probe.h"
#include "crypto/crypto.h"
#include "engine/copy_pipeline.h"
#include "engine/nbd_reader.h"
#include "tests/engine/nbd_server_process.h"
#include "tests/engine/slot_runs_util.h"
#include "tests/support/test_env.h"

namespace virtsnap::engine {
namespace {

using virtsnap::test::runsOf;

using namespace std::chrono_literals;
using test::kMiB;

constexpr uint64_t kSize = 64 * kMiB;
constexpr uint32_t kChunk = 64 * 1024;
constexpr auto kAnswerTimeout = 1s;

// nbdkit's pattern plugin: each 8-byte word holds its own offset, big-endian.
void patternBytes(uint64_t offset, std::span<uint8_t> out)
{
	for (size_t i = 0; i < out.size(); i++) {
		uint64_t word = (offset + i) & ~uint64_t(7);
		out[i] = uint8_t(word >> (8 * (7 - ((offset + i) & 7))));
	}
}

// One nbdkit serving `plugin` (the pattern) on a unix socket, with `extra` arguments
// (--filter=NAME options and their KEY=VALUE parameters), until the end of
// the scope.
class NbdKit
{
public:
	explicit NbdKit(const std::vector<std::string> &extra, const std::string &plugin = "pattern",
			uint64_t size = kSize)
	{
		std::vector<std::string> argv{"nbdkit", "--foreground", "--exit-with-parent", "--unix", socket_};
		// Options (--filter=...) go before the plugin, parameters after.
		for (const std::string &a : extra)
			if (a.starts_with("--"))
				argv.push_back(a);
		argv.insert(argv.end(), {plugin, "size=" + std::to_string(size)});
		for (const std::string &a : extra)
			if (!a.starts_with("--"))
				argv.push_back(a);
		server_.start(argv);
	}
	bool up() const { return server_.up(); }
	pid_t pid() const { return server_.pid(); }
	hypervisor::DiskExport disk() const
	{
		hypervisor::DiskExport e;
		e.diskId = "vdz";
		e.nbdSocket = socket_;
		e.size = kSize;
		e.answerTimeout = kAnswerTimeout;
		return e;
	}

private:
	test::NbdServerProcess server_{"vs-nbdkit"};
	const std::string &socket_ = server_.socket();
};

#define START_NBDKIT(name, ...)                                            \
	REQUIRE_TOOL("nbdkit");                                            \
	NbdKit name(__VA_ARGS__);                                          \
	ASSERT_TRUE(name.up()) << "nbdkit did not start"

const std::string kNoAnswer = "QEMU's export of vdz answered nothing within 1 s ([hypervisor] timeout)";

PutChunk hashingPut()
{
	return [](unsigned, std::span<const uint8_t> data) -> Result<store::ChunkId> { return crypto::sha256(data); };
}

TEST(NbdReaderTest, AnExportThatAnswersIsCopiedWhole)
{
	START_NBDKIT(server, {});
	auto reader = NbdReader::open(server.disk(), {"base:allocation"});
	ASSERT_TRUE(reader) << reader.error().toString();
	EXPECT_EQ((*reader)->size(), kSize);
	uint64_t described = 0;
	ASSERT_TRUE((*reader)->extents("base:allocation", [&](uint64_t off, uint64_t len, uint32_t) {
		EXPECT_EQ(off, described);
		described += len;
	}));
	EXPECT_EQ(described, kSize);

	store::SnapshotIndex index(kSize, kChunk);
	std::vector<bool> wanted(index.slots(), true);
	auto copied = copySlots(**reader, runsOf(wanted), index, hashingPut(), {}, {});
	ASSERT_TRUE(copied) << copied.error().toString();
	EXPECT_EQ(copied->bytesRead, kSize);
	Bytes expected(kChunk);
	for (uint64_t s = 0; s < index.slots(); s += 97) {
		patternBytes(s * kChunk, expected);
		EXPECT_EQ(index.at(s), crypto::sha256(expected)) << "slot " << s;
	}
}

// A disk of many 4 GiB windows, asked with several in flight, which nbdkit
// answers on several threads: the extents still come in offset order and
// cover exactly what was asked, the whole disk or only some ranges.
TEST(NbdReaderTest, ExtentsOfManyWindowsComeInOrderAndCoverWhatWasAsked)
{
	const uint64_t size = 100ull << 30;
	// The memory plugin: one hole, answered by nbdkit's threads, each
	// reply a little late so that several are in flight.
	START_NBDKIT(server, {"--filter=delay", "delay-extents=1ms"}, "memory", size);
	auto reader = NbdReader::open(server.disk(), {"base:allocation"});
	ASSERT_TRUE(reader) << reader.error().toString();
	ASSERT_EQ((*reader)->size(), size);
	auto walk = [&](std::span<const NbdReader::ByteRange> ranges) {
		std::vector<NbdReader::ByteRange> seen;
		auto visit = [&](uint64_t off, uint64_t len, uint32_t) {
			if (!seen.empty() && seen.back().offset + seen.back().length == off)
				seen.back().length += len;
			else
				seen.push_back({off, len});
		};
		auto r = ranges.empty() ? (*reader)->extents("base:allocation", visit)
					: (*reader)->extents("base:allocation", ranges, visit);
		EXPECT_TRUE(r) << r.error().toString();
		return seen;
	};
	auto whole = walk({});
	ASSERT_EQ(whole.size(), 1u);
	EXPECT_EQ(whole[0].offset, 0u);
	EXPECT_EQ(whole[0].length, size);
	const std::vector<NbdReader::ByteRange> ranges{
		{5, 10ull << 30}, {(20ull << 30) + 7, 1}, {(40ull << 30) - 1, 30ull << 30}, {size - 9, 100}};
	auto parts = walk(ranges);
	ASSERT_EQ(parts.size(), 4u);
	for (size_t i = 0; i < 3; i++) {
		EXPECT_EQ(parts[i].offset, ranges[i].offset) << i;
		EXPECT_EQ(parts[i].length, ranges[i].length) << i;
	}
	EXPECT_EQ(parts[3].offset, size - 9);
	EXPECT_EQ(parts[3].length, 9u); // clipped to the disk
}

TEST(NbdReaderTest, AStoppedServerFailsTheHandshakeWithinTheTimeout)
{
	START_NBDKIT(server, {});
	test::StoppedProcess stopped(server.pid());
	ASSERT_TRUE(stopped.stopped());
	auto start = std::chrono::steady_clock::now();
	auto reader = NbdReader::open(server.disk(), {"base:allocation"});
	auto took = test::since(start);
	ASSERT_FALSE(reader);
	EXPECT_EQ(reader.error().code, errc::kHypervisor);
	EXPECT_NE(reader.error().message.find(kNoAnswer), std::string::npos) << reader.error().message;
	EXPECT_GE(took, kAnswerTimeout);
	EXPECT_LT(took, kAnswerTimeout + 3s);
}

TEST(NbdReaderTest, ABlockStatusThatDoesNotComeBackFailsWithinTheTimeout)
{
	// The memory plugin: the pattern plugin's extents are answered by nbdkit
	// itself, around the filter.
	START_NBDKIT(server, {"--filter=delay", "delay-extents=60"}, "memory");
	auto reader = NbdReader::open(server.disk(), {"base:allocation"});
	ASSERT_TRUE(reader) << reader.error().toString();
	auto start = std::chrono::steady_clock::now();
	auto listed = (*reader)->extents("base:allocation", [](uint64_t, uint64_t, uint32_t) {
		ADD_FAILURE() << "an extent came after the request was given up";
	});
	ASSERT_FALSE(listed);
	EXPECT_NE(listed.error().message.find(kNoAnswer), std::string::npos) << listed.error().message;
	// Closing does not wait for the answer either.
	reader->reset();
	EXPECT_LT(test::since(start), kAnswerTimeout + 3s);
}

TEST(NbdReaderTest, ReadsThatDoNotComeBackFailTheCopyWithinTheTimeout)
{
	START_NBDKIT(server, {"--filter=delay", "rdelay=60"});
	auto reader = NbdReader::open(server.disk(), {"base:allocation"});
	ASSERT_TRUE(reader) << reader.error().toString();
	store::SnapshotIndex index(kSize, kChunk);
	std::vector<bool> wanted(index.slots(), true);
	auto start = std::chrono::steady_clock::now();
	auto copied = copySlots(**reader, runsOf(wanted), index, hashingPut(), {}, {});
	ASSERT_FALSE(copied);
	EXPECT_NE(copied.error().message.find(kNoAnswer), std::string::npos) << copied.error().message;
	EXPECT_EQ((*reader)->inFlight(), 0u);
	reader->reset();
	EXPECT_LT(test::since(start), kAnswerTimeout + 3s);
}

TEST(NbdReaderTest, AServerStoppedMidCopyFailsItWithinTheTimeout)
{
	// Slowed so that the copy is surely under way when the first chunk is
	// stored: the server is stopped then, from the worker that stores it.
	START_NBDKIT(server, {"--filter=delay", "rdelay=20ms"});
	auto reader = NbdReader::open(server.disk(), {"base:allocation"});
	ASSERT_TRUE(reader) << reader.error().toString();
	store::SnapshotIndex index(kSize, kChunk);
	std::vector<bool> wanted(index.slots(), true);
	std::atomic<pid_t> toStop = server.pid();
	std::optional<test::StoppedProcess> stopped;
	std::mutex stopping;
	std::chrono::steady_clock::time_point stoppedAt;
	auto put = [&](unsigned, std::span<const uint8_t> data) -> Result<store::ChunkId> {
		std::lock_guard lock(stopping);
		if (pid_t pid = toStop.exchange(-1); pid > 0) {
			stopped.emplace(pid);
			stoppedAt = std::chrono::steady_clock::now();
		}
		return crypto::sha256(data);
	};
	auto copied = copySlots(**reader, runsOf(wanted), index, put, {}, {});
	auto took = test::since(stoppedAt);
	ASSERT_TRUE(stopped && stopped->stopped());
	ASSERT_FALSE(copied) << "the copy finished although its server was stopped";
	EXPECT_NE(copied.error().message.find(kNoAnswer), std::string::npos) << copied.error().message;
	EXPECT_LT(took, kAnswerTimeout + 3s);
	reader->reset();
}

} // namespace
} // namespace virtsnap::engine
