// The capture's data path (engine/copy_pipeline.h) without QEMU: a fake
// asynchronous source that completes reads in an order the test chooses,
// and a put() that names each chunk by its SHA-256. Checked: every slot gets
// the id of its own bytes whatever order reads finish in; only the wanted
// slots are read, in requests that respect the limits; an error of a worker,
// a read or a start ends the copy with that error and nothing in flight;
// a source that stops answering is abandoned; cancellation stops it between
// reads; and the data memory is the buffer pool, the same for a small disk
// and a large one.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "core/bytes.h"
#include "crypto/crypto.h"
#include "engine/copy_pipeline.h"
#include "tests/engine/slot_runs_util.h"
#include "tests/support/random_bytes.h"

namespace virtsnap::engine {
namespace {

using virtsnap::test::runsOf;

using store::ChunkId;
using virtsnap::test::fillRandom;
using store::SnapshotIndex;

constexpr uint32_t kChunk = 4096;

// The bytes of slot `s` of a synthetic disk: every 5th slot all zeros, the
// others distinct. Generated, not stored, so a large disk costs no memory.
void slotBytes(uint64_t s, std::span<uint8_t> out)
{
	if (s % 5 == 3) {
		std::fill(out.begin(), out.end(), 0);
		return;
	}
	std::mt19937_64 rng(s + 1);
	fillRandom(rng, out);
}

ChunkId idOfBytes(std::span<const uint8_t> data)
{
	return crypto::sha256(data);
}

enum class Order { Fifo, Reverse, Shuffled };

// An asynchronous source over the synthetic disk. Reads wait in a list until
// poll(), which completes some of them (one, or all, in the chosen order).
class FakeSource : public ReadSource
{
public:
	FakeSource(uint64_t volumeSize, Order order) : size_(volumeSize), order_(order), rng_(7) {}

	// Reads at this offset complete with an error / fail to start.
	uint64_t failReadAt = UINT64_MAX;
	uint64_t failStartAt = UINT64_MAX;
	// Every n-th poll completes nothing (the source is "slow").
	unsigned idleEvery = 3;
	// Reads at or past this offset are never answered (with Order::Fifo,
	// which answers them in order); once one has waited
	// `answerPolls` polls, poll() fails, as NbdReader's does after its
	// answer timeout.
	uint64_t hangFrom = UINT64_MAX;
	unsigned answerPolls = 20;
	unsigned abandoned = 0;

	Result<void> startRead(std::span<uint8_t> out, uint64_t offset, Done done) override
	{
		std::lock_guard lock(mutex_);
		if (offset == failStartAt)
			return fail(errc::kHypervisor, "start refused at " + std::to_string(offset));
		EXPECT_LE(offset + out.size(), size_);
		EXPECT_EQ(offset % kChunk, 0u);
		pending_.push_back({out, offset, std::move(done)});
		requests.push_back({offset, out.size()});
		buffers.insert(out.data());
		bufferEnds.insert(out.data() + out.size());
		peakInFlight = std::max(peakInFlight, pending_.size());
		return {};
	}

	size_t inFlight() const override
	{
		std::lock_guard lock(mutex_);
		return pending_.size();
	}

	Result<void> poll(int wakeFd, int timeoutMs) override
	{
		polls++;
		std::vector<Pending> ready;
		{
			std::lock_guard lock(mutex_);
			size_t answerable = 0;
			while (answerable < pending_.size() && pending_[answerable].offset < hangFrom)
				answerable++;
			if (!pending_.empty() && answerable == 0) {
				if (++unansweredPolls_ >= answerPolls)
					return fail(errc::kHypervisor, "the source answered nothing");
			} else if (!pending_.empty() && polls % idleEvery != 0) {
				size_t take = order_ == Order::Fifo ? answerable : 1;
				for (size_t n = 0; n < take; n++) {
					size_t i = order_ == Order::Fifo ? 0
						   : order_ == Order::Reverse
							   ? pending_.size() - 1
							   : size_t(rng_() % pending_.size());
					ready.push_back(std::move(pending_[i]));
					pending_.erase(pending_.begin() + long(i));
				}
			}
		}
		if (ready.empty()) {
			// Nothing to complete: wait for the pipeline's wake-up, as the
			// real source waits on its socket and the eventfd.
			struct pollfd p{wakeFd, POLLIN, 0};
			if (wakeFd >= 0 && ::poll(&p, 1, std::min(timeoutMs, 5)) > 0) {
				uint64_t n;
				(void)!::read(wakeFd, &n, sizeof(n));
			}
			return {};
		}
		for (Pending &p : ready) {
			for (uint64_t off = 0; off < p.out.size(); off += kChunk)
				slotBytes((p.offset + off) / kChunk,
					  p.out.subspan(off, std::min<uint64_t>(kChunk, p.out.size() - off)));
			if (p.offset == failReadAt)
				p.done(fail(errc::kHypervisor, "read failed at " + std::to_string(p.offset)));
			else
				p.done({});
		}
		return {};
	}

	void abandon() override
	{
		std::lock_guard lock(mutex_);
		pending_.clear();
		abandoned++;
	}

	struct Request {
		uint64_t offset;
		size_t length;
	};
	std::vector<Request> requests;
	std::set<uint8_t *> buffers;
	std::set<uint8_t *> bufferEnds;
	size_t peakInFlight = 0;
	unsigned polls = 0;

private:
	struct Pending {
		std::span<uint8_t> out;
		uint64_t offset;
		Done done;
	};
	const uint64_t size_;
	const Order order_;
	std::mt19937_64 rng_;
	mutable std::mutex mutex_;
	std::vector<Pending> pending_;
	unsigned unansweredPolls_ = 0;
};

// A marker for slots the copy must leave alone.
ChunkId untouched()
{
	ChunkId id;
	id.fill(0xee);
	return id;
}

SnapshotIndex markedIndex(uint64_t volumeSize)
{
	SnapshotIndex index(volumeSize, kChunk);
	for (uint64_t s = 0; s < index.slots(); s++)
		index.set(s, untouched());
	return index;
}

PutChunk hashingPut(std::atomic<uint64_t> *calls = nullptr)
{
	return [calls](unsigned, std::span<const uint8_t> data) -> Result<ChunkId> {
		if (calls)
			(*calls)++;
		return idOfBytes(data);
	};
}

void expectSlotIds(const SnapshotIndex &index, const std::vector<bool> &wanted)
{
	Bytes buf(kChunk);
	for (uint64_t s = 0; s < index.slots(); s++) {
		std::span<uint8_t> data(buf.data(), index.slotLength(s));
		slotBytes(s, data);
		ChunkId want = !wanted[s] ? untouched() : isAllZero(data) ? store::kZeroChunk : idOfBytes(data);
		ASSERT_EQ(index.at(s), want) << "slot " << s;
	}
}

class OrderTest : public ::testing::TestWithParam<Order>
{
};

TEST_P(OrderTest, EverySlotGetsTheIdOfItsOwnBytes)
{
	// 1000 slots and a short last one; reads of 3 chunks, so requests are
	// cut mid-run and completions of one request carry several slots.
	const uint64_t size = 1000 * kChunk + 1000;
	FakeSource source(size, GetParam());
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), true);
	PipelineOptions options{3 * kChunk, 5, 4, 0};
	std::atomic<uint64_t> puts{0};
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(&puts), {}, {}, options);
	ASSERT_TRUE(stats) << stats.error().toString();
	expectSlotIds(index, wanted);
	EXPECT_EQ(stats->bytesRead, size);
	EXPECT_EQ(stats->zeroChunks, 200u);
	EXPECT_EQ(puts.load(), index.slots() - 200);
	EXPECT_EQ(source.inFlight(), 0u);
}

INSTANTIATE_TEST_SUITE_P(CompletionOrders, OrderTest,
			 ::testing::Values(Order::Fifo, Order::Reverse, Order::Shuffled));

TEST(CopyPipelineTest, ReadsOnlyWantedSlotsInRequestsWithinTheLimits)
{
	const uint64_t size = 512 * kChunk;
	FakeSource source(size, Order::Shuffled);
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), false);
	std::mt19937_64 rng(3);
	uint64_t wantedBytes = 0;
	for (uint64_t s = 0; s < index.slots(); s++)
		if (rng() % 3 == 0) {
			wanted[s] = true;
			wantedBytes += kChunk;
		}
	PipelineOptions options{4 * kChunk, 3, 2, 0};
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(), {}, {}, options);
	ASSERT_TRUE(stats) << stats.error().toString();
	expectSlotIds(index, wanted);
	EXPECT_EQ(stats->bytesRead, wantedBytes);
	uint64_t requested = 0;
	for (const auto &r : source.requests) {
		EXPECT_LE(r.length, 4 * kChunk);
		// A request covers wanted slots only: it never crosses a gap.
		for (uint64_t off = r.offset; off < r.offset + r.length; off += kChunk)
			EXPECT_TRUE(wanted[off / kChunk]) << "read of unwanted slot " << off / kChunk;
		requested += r.length;
	}
	EXPECT_EQ(requested, wantedBytes);
	EXPECT_LE(source.peakInFlight, 3u);
	EXPECT_EQ(stats->peakInFlight, source.peakInFlight);
}

TEST(CopyPipelineTest, NothingWantedReadsNothing)
{
	FakeSource source(64 * kChunk, Order::Fifo);
	SnapshotIndex index = markedIndex(64 * kChunk);
	std::vector<bool> wanted(index.slots(), false);
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(), {}, {});
	ASSERT_TRUE(stats);
	EXPECT_TRUE(source.requests.empty());
	expectSlotIds(index, wanted);
}

TEST(CopyPipelineTest, AWorkerErrorEndsTheCopyWithThatError)
{
	const uint64_t size = 2000 * kChunk;
	FakeSource source(size, Order::Shuffled);
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), true);
	std::atomic<uint64_t> calls{0};
	PutChunk put = [&](unsigned, std::span<const uint8_t> data) -> Result<ChunkId> {
		if (++calls == 50)
			return fail(errc::kNoSpace, "write pack: No space left on device");
		return idOfBytes(data);
	};
	PipelineOptions options{2 * kChunk, 4, 3, 0};
	auto stats = copySlots(source, runsOf(wanted), index, put, {}, {}, options);
	ASSERT_FALSE(stats);
	EXPECT_EQ(stats.error().code, errc::kNoSpace);
	EXPECT_EQ(stats.error().message, "write pack: No space left on device");
	// It stopped: far from every read, and none left running.
	EXPECT_LT(source.requests.size(), index.slots() / 2);
	EXPECT_EQ(source.inFlight(), 0u);
}

TEST(CopyPipelineTest, AFailedReadEndsTheCopyWithItsError)
{
	const uint64_t size = 300 * kChunk;
	FakeSource source(size, Order::Reverse);
	source.failReadAt = 40 * kChunk;
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), true);
	PipelineOptions options{kChunk, 4, 2, 0};
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(), {}, {}, options);
	ASSERT_FALSE(stats);
	EXPECT_EQ(stats.error().code, errc::kHypervisor);
	EXPECT_EQ(stats.error().message, "read failed at " + std::to_string(40 * kChunk));
	EXPECT_EQ(source.inFlight(), 0u);
	// The failed slot never got an id.
	EXPECT_EQ(index.at(40), untouched());
}

TEST(CopyPipelineTest, AReadThatCannotStartEndsTheCopy)
{
	const uint64_t size = 300 * kChunk;
	FakeSource source(size, Order::Fifo);
	source.failStartAt = 100 * kChunk;
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), true);
	PipelineOptions options{kChunk, 4, 2, 0};
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(), {}, {}, options);
	ASSERT_FALSE(stats);
	EXPECT_EQ(stats.error().message, "start refused at " + std::to_string(100 * kChunk));
	EXPECT_EQ(source.inFlight(), 0u);
	for (const auto &r : source.requests)
		EXPECT_LT(r.offset, 100 * kChunk);
}

TEST(CopyPipelineTest, ASourceThatStopsAnsweringIsAbandonedAndTheCopyFails)
{
	// Fifo: reads come back in order until the first at 100 chunks, which
	// never does. The reads behind it hold buffers of the pool: the copy
	// must give them up through abandon(), not wait, and not free the pool
	// under them (LeakSanitizer would see a leaked pool).
	const uint64_t size = 300 * kChunk;
	FakeSource source(size, Order::Fifo);
	source.hangFrom = 100 * kChunk;
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), true);
	PipelineOptions options{kChunk, 4, 2, 0};
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(), {}, {}, options);
	ASSERT_FALSE(stats);
	EXPECT_EQ(stats.error().message, "the source answered nothing");
	EXPECT_EQ(source.abandoned, 1u);
	EXPECT_EQ(source.inFlight(), 0u);
	EXPECT_EQ(index.at(100), untouched());
	EXPECT_EQ(index.at(99), idOfBytes([] {
		Bytes b(kChunk);
		slotBytes(99, b);
		return b;
	}()));
}

TEST(CopyPipelineTest, CancellationStopsBetweenReads)
{
	const uint64_t size = 5000 * kChunk;
	FakeSource source(size, Order::Shuffled);
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), true);
	size_t checks = 0;
	auto cancelled = [&] { return ++checks > 20; };
	std::atomic<uint64_t> puts{0};
	PipelineOptions options{kChunk, 4, 2, 0};
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(&puts), {}, cancelled, options);
	ASSERT_FALSE(stats);
	EXPECT_EQ(stats.error().code, errc::kIncorrectState);
	EXPECT_EQ(stats.error().message, "interrupted");
	EXPECT_LT(source.requests.size(), 200u);
	EXPECT_EQ(source.inFlight(), 0u);
	// Workers stopped too: no put runs after the call returned.
	uint64_t after = puts.load();
	std::this_thread::sleep_for(std::chrono::milliseconds(20));
	EXPECT_EQ(puts.load(), after);
}

TEST(CopyPipelineTest, ProgressReachesTheTotalOfWantedBytes)
{
	const uint64_t size = 200 * kChunk + 512;
	FakeSource source(size, Order::Shuffled);
	SnapshotIndex index = markedIndex(size);
	std::vector<bool> wanted(index.slots(), true);
	wanted[7] = wanted[8] = false;
	std::mutex m;
	uint64_t last = 0, total = 0;
	ProgressFn progress = [&](uint64_t done, uint64_t t) {
		std::lock_guard lock(m);
		last = std::max(last, done);
		total = t;
	};
	auto stats = copySlots(source, runsOf(wanted), index, hashingPut(), progress, {}, PipelineOptions{2 * kChunk, 3, 2, 0});
	ASSERT_TRUE(stats);
	EXPECT_EQ(total, size - 2 * kChunk);
	EXPECT_EQ(last, total);
}

// The data memory is the pool: (reads in flight + 2 per worker) buffers of
// one request each, allocated once, whatever the disk size, and every read
// lands in it, even when the workers are much slower than the reads.
TEST(CopyPipelineTest, MemoryIsTheBufferPoolWhateverTheDiskSize)
{
	PipelineOptions options{8 * kChunk, 4, 2, 0};
	const uint64_t pool = uint64_t(4 + 2 * 2) * 8 * kChunk;
	for (uint64_t slots : {uint64_t(100), uint64_t(20000)}) {
		const uint64_t size = slots * kChunk;
		FakeSource source(size, Order::Shuffled);
		source.idleEvery = 1000000; // reads are fast: only the workers hold things up
		SnapshotIndex index = markedIndex(size);
		std::vector<bool> wanted(index.slots(), true);
		std::atomic<uint64_t> calls{0};
		PutChunk slowPut = [&](unsigned, std::span<const uint8_t> data) -> Result<ChunkId> {
			if (++calls % 500 == 0)
				std::this_thread::sleep_for(std::chrono::milliseconds(2));
			return idOfBytes(data);
		};
		auto stats = copySlots(source, runsOf(wanted), index, slowPut, {}, {}, options);
		ASSERT_TRUE(stats) << stats.error().toString();
		EXPECT_EQ(stats->bufferBytes, pool) << slots << " slots";
		// Every read went into one of the pool's buffers, all in one region
		// of `pool` bytes.
		EXPECT_LE(source.buffers.size(), 8u) << slots << " slots";
		uint8_t *lo = *source.buffers.begin();
		uint8_t *hi = *source.bufferEnds.rbegin();
		EXPECT_LE(uint64_t(hi - lo), pool) << slots << " slots";
		EXPECT_LE(source.peakInFlight, 4u);
		expectSlotIds(index, wanted);
	}
}

} // namespace
} // namespace virtsnap::engine
