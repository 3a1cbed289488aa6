// SlotRuns (engine/slot_runs.h): runs that touch or overlap join in any
// order of adds, and past the cap the runs join across their smallest gaps:
// the list stays within the cap and still covers every slot added.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "engine/slot_runs.h"

namespace virtsnap::engine {
namespace {

TEST(SlotRunsTest, TouchingAndOverlappingRunsJoinInAnyOrder)
{
	SlotRuns runs;
	runs.add(10, 20);
	runs.add(20, 25); // touches
	runs.add(30, 40);
	runs.add(5, 8);	  // before everything
	runs.add(22, 31); // bridges two
	runs.add(7, 7);	  // empty: nothing
	runs.add(50, 60);
	runs.add(45, 46);
	EXPECT_EQ(runs.runs(), (std::vector<SlotRun>{{5, 8}, {10, 40}, {45, 46}, {50, 60}}));
	EXPECT_EQ(runs.slots(), 3u + 30 + 1 + 10);
	EXPECT_EQ(runs.bridgedGap(), 0u);
}

TEST(SlotRunsTest, PastTheCapRunsJoinAcrossTheSmallestGapsAndCoverEverySlot)
{
	constexpr size_t kCap = 64;
	std::mt19937_64 rng(5);
	std::set<uint64_t> added;
	SlotRuns runs(kCap);
	uint64_t at = 0;
	// Ascending, as extents come, then some out of order.
	for (int i = 0; i < 5000; i++) {
		at += 1 + rng() % (i % 7 == 0 ? 5000 : 40);
		uint64_t length = 1 + rng() % 3;
		runs.add(at, at + length);
		for (uint64_t s = at; s < at + length; s++)
			added.insert(s);
		at += length;
		ASSERT_LE(runs.size(), kCap);
	}
	for (int i = 0; i < 500; i++) {
		uint64_t s = rng() % at;
		runs.add(s, s + 1);
		added.insert(s);
		ASSERT_LE(runs.size(), kCap);
	}
	EXPECT_GT(runs.bridgedGap(), 0u);
	// Sorted, disjoint, apart by more than the bridged gap, covering
	// every slot added.
	const auto &list = runs.runs();
	for (size_t i = 0; i < list.size(); i++) {
		ASSERT_LT(list[i].first, list[i].end);
		if (i > 0) {
			ASSERT_GT(list[i].first, list[i - 1].end + runs.bridgedGap());
		}
	}
	size_t r = 0;
	for (uint64_t s : added) {
		while (r < list.size() && list[r].end <= s)
			r++;
		ASSERT_TRUE(r < list.size() && list[r].first <= s) << "slot " << s << " lost";
	}
	// The large gaps (every 7th add) stay gaps: coalescing bridged the
	// small ones first.
	EXPECT_GT(list.size(), 4u);
}

// A change in an even pattern has all gaps alike: coalescing joins only as
// many of them as it must, it does not make the whole disk one run.
TEST(SlotRunsTest, EqualGapsAreJoinedOnlyAsFarAsNeeded)
{
	SlotRuns runs(64);
	for (uint64_t i = 0; i < 1000; i++)
		runs.add(i * 10, i * 10 + 1);
	EXPECT_LE(runs.size(), 64u);
	EXPECT_GE(runs.size(), 16u);
	EXPECT_EQ(runs.runs().front().first, 0u);
	EXPECT_EQ(runs.runs().back().end, 9991u);
}

} // namespace
} // namespace virtsnap::engine
