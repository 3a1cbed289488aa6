// The scheduler and retention, on a fake clock: the times are the tests'.
#include <algorithm>

#include <gtest/gtest.h>

#include "daemon/lifecycle_schedule.h"
#include "policy_test_util.h"

namespace virtsnap::daemon::test {
namespace {

using namespace std::chrono;

CreateRule everyHours(int interval, int startMinute)
{
	CreateRule rule;
	rule.intervalHours = interval;
	rule.startMinute = startMinute;
	rule.timesGiven = true;
	return rule;
}

TEST(ScheduleTest, IntervalRunsFromItsTimeEachDay)
{
	CreateRule daily = everyHours(24, 3 * 60);
	EXPECT_EQ(show(nextRunAfter(daily, utc(2026, 12, 5, 8, 7))), "2026-12-06T03:00:00.000Z");
	EXPECT_EQ(show(nextRunAfter(daily, utc(2026, 12, 31, 3, 0))), "2027-01-01T03:00:00.000Z");
	// Every 8 hours from 09:30: 01:30, 09:30 and 17:30.
	CreateRule eight = everyHours(8, 9 * 60 + 30);
	EXPECT_EQ(show(nextRunAfter(eight, utc(2026, 12, 5, 0, 0))), "2026-12-05T01:30:00.000Z");
	EXPECT_EQ(show(nextRunAfter(eight, utc(2026, 12, 5, 9, 30))), "2026-12-05T17:30:00.000Z");
	EXPECT_EQ(show(nextRunAfter(eight, utc(2026, 12, 5, 17, 30))), "2026-12-06T01:30:00.000Z");
	// No Times: from 00:00.
	CreateRule noTimes;
	noTimes.intervalHours = 12;
	EXPECT_EQ(show(nextRunAfter(noTimes, utc(2026, 12, 5, 0, 0))),
		  "2026-12-05T12:00:00.000Z");
}

TEST(ScheduleTest, ReadsTheTimesTheCatalogKeeps)
{
	UtcTime t = utc(2026, 12, 5, 3, 4) + seconds{5};
	EXPECT_EQ(show(parseUtcTime(isoTime(t))), "2026-12-05T03:04:05.000Z");
	EXPECT_EQ(show(parseUtcTime("2026-12-05T03:04:05.123Z")), "2026-12-05T03:04:05.123Z");
	for (const char *bad : {"", "2026-12-05", "2026-12-05T03:04:05Z", "2026-02-30T03:04:05.000Z",
				"2026-12-05T24:00:00.000Z", "2026-12-05T03:04:05.000Z junk"})
		EXPECT_FALSE(parseUtcTime(bad)) << bad;
}

TEST(ScheduleTest, CronRulesAskTheirCron)
{
	CreateRule rule;
	rule.cron = *CronExpression::parse("cron(0 2 ? * SUN *)");
	EXPECT_EQ(show(nextRunAfter(rule, utc(2026, 12, 5, 8, 0))), "2026-12-06T02:00:00.000Z");
}

TEST(ScheduleTest, DueOnlyOnceTheNextSlotHasCome)
{
	CreateRule daily = everyHours(24, 3 * 60);
	UtcTime lastRun = utc(2026, 12, 5, 3, 0);
	EXPECT_FALSE(isDue(daily, lastRun, utc(2026, 12, 6, 2, 59)));
	EXPECT_TRUE(isDue(daily, lastRun, utc(2026, 12, 6, 3, 0)));
	EXPECT_TRUE(isDue(daily, lastRun, utc(2026, 12, 6, 3, 1)));
}

// A daemon down from the 5th to the 9th missed four daily slots: on start
// it finds the schedule due, runs it once, and then nothing is due until
// the next slot after its start.
TEST(ScheduleTest, MissedSlotsRunOnceOnStart)
{
	CreateRule daily = everyHours(24, 3 * 60);
	UtcTime lastRun = utc(2026, 12, 5, 3, 0);
	UtcTime start = utc(2026, 12, 9, 10, 0);
	int runs = 0;
	for (UtcTime now = start; now < utc(2026, 12, 10, 2, 59); now += minutes{1})
		if (isDue(daily, lastRun, now)) {
			runs++;
			lastRun = now;
		}
	EXPECT_EQ(runs, 1);
	EXPECT_EQ(show(nextRunAfter(daily, lastRun)), "2026-12-10T03:00:00.000Z");
	EXPECT_TRUE(isDue(daily, lastRun, utc(2026, 12, 10, 3, 0)));
}

RetentionCandidate snap(const std::string &id, const std::string &volume, UtcMillis start, bool completed = true,
			const std::string &policy = "policy-1", const std::string &schedule = "daily")
{
	RetentionCandidate c{id, volume, start, completed, {}};
	if (!policy.empty())
		c.tags = {{kPolicyIdTag, policy}, {kScheduleNameTag, schedule}, {"team", "a"}};
	return c;
}

std::vector<std::string> sorted(std::vector<std::string> v)
{
	std::sort(v.begin(), v.end());
	return v;
}

using Ids = std::vector<std::string>;

TEST(RetentionTest, CountKeepsTheNewestCompletedPerVolume)
{
	std::vector<RetentionCandidate> snaps;
	for (int i = 1; i <= 5; i++) {
		snaps.push_back(snap("snap-a" + std::to_string(i), "vol-a", utc(2026, 12, i)));
		snaps.push_back(snap("snap-b" + std::to_string(i), "vol-b", utc(2026, 12, i)));
	}
	RetainRule three{.count = 3};
	EXPECT_EQ(sorted(snapshotsToRetire(three, "policy-1", "daily", snaps, utc(2026, 12, 6))),
		  (Ids{"snap-a1", "snap-a2", "snap-b1", "snap-b2"}));
}

// Runs a moment apart start in the same second: the milliseconds order
// them, never their (random) ids.
TEST(RetentionTest, OrdersByTheMillisecond)
{
	std::vector<RetentionCandidate> snaps;
	for (int i = 0; i < 4; i++)
		snaps.push_back(snap("snap-" + std::string(1, char('z' - i)), "vol-a", utc(2026, 12, 5) + milliseconds{100 * i}));
	EXPECT_EQ(sorted(snapshotsToRetire(RetainRule{.count = 2}, "policy-1", "daily", snaps, utc(2026, 12, 6))),
		  (Ids{"snap-y", "snap-z"}));
}

TEST(RetentionTest, OnlyThisPolicysAndSchedulesSnapshots)
{
	std::vector<RetentionCandidate> snaps = {
		snap("snap-untagged", "vol-a", utc(2026, 11, 1), true, ""),
		snap("snap-other-policy", "vol-a", utc(2026, 11, 2), true, "policy-2"),
		snap("snap-other-schedule", "vol-a", utc(2026, 11, 3), true, "policy-1", "weekly"),
		snap("snap-1", "vol-a", utc(2026, 12, 1)),
		snap("snap-2", "vol-a", utc(2026, 12, 2)),
	};
	EXPECT_EQ(snapshotsToRetire(RetainRule{.count = 1}, "policy-1", "daily", snaps, utc(2026, 12, 6)),
		  (Ids{"snap-1"}));
}

// A locked snapshot is skipped and still counts as kept: retention never
// takes a newer one in its place.
TEST(RetentionTest, SkipsALockedSnapshot)
{
	std::vector<RetentionCandidate> snaps = {
		snap("snap-1", "vol-a", utc(2026, 12, 1)),
		snap("snap-2", "vol-a", utc(2026, 12, 2)),
		snap("snap-3", "vol-a", utc(2026, 12, 3)),
	};
	snaps[0].locked = true;
	EXPECT_EQ(snapshotsToRetire(RetainRule{.count = 1}, "policy-1", "daily", snaps, utc(2026, 12, 6)),
		  (Ids{"snap-2"}));
}

// A newer snapshot still pending, or failed, does not count: the volume
// keeps Count completed ones until the new one completes.
TEST(RetentionTest, WaitsForTheNewerSnapshotToComplete)
{
	std::vector<RetentionCandidate> snaps = {
		snap("snap-1", "vol-a", utc(2026, 12, 1)),
		snap("snap-2", "vol-a", utc(2026, 12, 2)),
		snap("snap-3", "vol-a", utc(2026, 12, 3), false),
	};
	RetainRule two{.count = 2};
	EXPECT_EQ(snapshotsToRetire(two, "policy-1", "daily", snaps, utc(2026, 12, 6)), Ids{});
	snaps[2].completed = true;
	EXPECT_EQ(snapshotsToRetire(two, "policy-1", "daily", snaps, utc(2026, 12, 6)), (Ids{"snap-1"}));
}

TEST(RetentionTest, AgeOnAFakeClock)
{
	std::vector<RetentionCandidate> snaps = {
		snap("snap-1", "vol-a", utc(2026, 12, 1, 3)),
		snap("snap-2", "vol-a", utc(2026, 12, 2, 3)),
		snap("snap-3", "vol-a", utc(2026, 12, 3, 3)),
	};
	RetainRule week{.interval = 1, .unit = RetainUnit::Weeks};
	EXPECT_EQ(snapshotsToRetire(week, "policy-1", "daily", snaps, utc(2026, 12, 8, 2, 59)), Ids{});
	EXPECT_EQ(snapshotsToRetire(week, "policy-1", "daily", snaps, utc(2026, 12, 8, 3, 0)), (Ids{"snap-1"}));
	EXPECT_EQ(sorted(snapshotsToRetire(week, "policy-1", "daily", snaps, utc(2026, 12, 9, 3, 0))),
		  (Ids{"snap-1", "snap-2"}));
	// Long past every expiry, the newest completed one stays: nothing
	// newer has completed.
	EXPECT_EQ(sorted(snapshotsToRetire(week, "policy-1", "daily", snaps, utc(2030, 1, 1))),
		  (Ids{"snap-1", "snap-2"}));
}

TEST(RetentionTest, MonthsAndYearsFollowTheCalendar)
{
	RetainRule month{.interval = 1, .unit = RetainUnit::Months};
	EXPECT_EQ(show(retentionExpiry(month, utc(2027, 1, 31, 3))), "2027-02-28T03:00:00.000Z");
	EXPECT_EQ(show(retentionExpiry(month, utc(2028, 1, 31, 3))), "2028-02-29T03:00:00.000Z");
	EXPECT_EQ(show(retentionExpiry(month, utc(2026, 12, 15, 3))), "2027-01-15T03:00:00.000Z");
	RetainRule year{.interval = 1, .unit = RetainUnit::Years};
	EXPECT_EQ(show(retentionExpiry(year, utc(2028, 2, 29))), "2029-02-28T00:00:00.000Z");
	RetainRule thirty{.interval = 30, .unit = RetainUnit::Days};
	EXPECT_EQ(show(retentionExpiry(thirty, utc(2026, 12, 5))), "2027-01-04T00:00:00.000Z");
}

} // namespace
} // namespace virtsnap::daemon::test
