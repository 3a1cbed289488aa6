// AWS's cron expressions: the runs they name, checked against calendars
// worked out by hand (month ends, leap years, weekdays counted from 1 =
// Sunday, L, W and #), and the one-line refusals of what is not cron or
// not supported.
#include <cstdlib>
#include <ctime>

#include <gtest/gtest.h>

#include "daemon/cron.h"
#include "policy_test_util.h"

namespace virtsnap::daemon::test {
namespace {

CronExpression cron(const char *text)
{
	auto c = CronExpression::parse(text);
	EXPECT_TRUE(c) << text << ": " << c.error().toString();
	return c ? *c : *CronExpression::parse("cron(0 0 * * ? *)");
}

std::string next(const char *text, UtcTime after)
{
	return show(cron(text).nextAfter(after));
}

TEST(CronTest, DailyRunsStrictlyAfterTheTimeGiven)
{
	EXPECT_EQ(next("cron(0 3 * * ? *)", utc(2026, 12, 5, 8, 7)), "2026-12-06T03:00:00.000Z");
	EXPECT_EQ(next("cron(0 3 * * ? *)", utc(2026, 12, 5, 2, 59)), "2026-12-05T03:00:00.000Z");
	EXPECT_EQ(next("cron(0 3 * * ? *)", utc(2026, 12, 5, 3, 0)), "2026-12-06T03:00:00.000Z");
	// Seconds into the minute of a run: that run has begun, the next is tomorrow.
	EXPECT_EQ(show(cron("cron(0 3 * * ? *)").nextAfter(utc(2026, 12, 5, 3, 0) + std::chrono::seconds{30})),
		  "2026-12-06T03:00:00.000Z");
}

TEST(CronTest, StepsListsAndRanges)
{
	EXPECT_EQ(next("cron(0 */6 * * ? *)", utc(2026, 12, 5, 7, 0)), "2026-12-05T12:00:00.000Z");
	EXPECT_EQ(next("cron(30 1/8 * * ? *)", utc(2026, 12, 5, 1, 30)), "2026-12-05T09:30:00.000Z");
	EXPECT_EQ(next("cron(15 2,14 * * ? *)", utc(2026, 12, 5, 3, 0)), "2026-12-05T14:15:00.000Z");
	EXPECT_EQ(next("cron(0 0 1 JAN,JUL ? *)", utc(2026, 1, 1, 0, 0)), "2026-07-01T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 10-12 * ? *)", utc(2026, 12, 12, 0, 0)), "2027-01-10T00:00:00.000Z");
}

TEST(CronTest, MonthEndsAndLeapYears)
{
	// Day 31 skips the months that have none.
	EXPECT_EQ(next("cron(0 0 31 * ? *)", utc(2026, 4, 1)), "2026-05-31T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 L * ? *)", utc(2027, 1, 31)), "2027-02-28T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 L * ? *)", utc(2028, 2, 1)), "2028-02-29T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 L * ? *)", utc(2100, 2, 1)), "2100-02-28T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 29 2 ? *)", utc(2026, 3, 1)), "2028-02-29T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 23 L 12 ? *)", utc(2026, 12, 31, 23, 0)), "2027-12-31T23:00:00.000Z");
}

TEST(CronTest, DaysOfWeekCountFromSunday)
{
	// 2026-12-04 is a Friday, 2026-12-01 a Tuesday.
	EXPECT_EQ(next("cron(0 18 ? * MON-FRI *)", utc(2026, 12, 4, 18, 0)), "2026-12-07T18:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 ? * 1 *)", utc(2026, 12, 5)), "2026-12-06T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 ? * 7 *)", utc(2026, 12, 4)), "2026-12-05T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 ? * SAT,SUN *)", utc(2026, 12, 6)), "2026-12-12T00:00:00.000Z");
}

TEST(CronTest, NthAndLastWeekdayOfTheMonth)
{
	// The second Tuesday: December 8th; then January 12th, 2027.
	EXPECT_EQ(next("cron(0 0 ? * 3#2 *)", utc(2026, 12, 5)), "2026-12-08T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 ? * TUE#2 *)", utc(2026, 12, 8)), "2027-01-12T00:00:00.000Z");
	// The first Monday of December 2026 is the 7th: a whole week in.
	EXPECT_EQ(next("cron(0 0 ? * 2#1 *)", utc(2026, 12, 1)), "2026-12-07T00:00:00.000Z");
	// A fifth Friday only in months that have one: January 2027 (29th).
	EXPECT_EQ(next("cron(0 0 ? * 6#5 *)", utc(2026, 12, 1)), "2027-01-29T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 ? * 6L *)", utc(2026, 12, 5)), "2026-12-25T00:00:00.000Z");
	// L alone is the week's last day: every Saturday.
	EXPECT_EQ(next("cron(0 0 ? * L *)", utc(2026, 12, 7)), "2026-12-12T00:00:00.000Z");
}

TEST(CronTest, NearestWeekdayStaysInItsMonth)
{
	// August 1st 2026 is a Saturday: Monday the 3rd, not July 31st.
	EXPECT_EQ(next("cron(0 0 1W * ? *)", utc(2026, 7, 15)), "2026-08-03T00:00:00.000Z");
	// November 1st 2026 is a Sunday: Monday the 2nd.
	EXPECT_EQ(next("cron(0 0 1W * ? *)", utc(2026, 10, 15)), "2026-11-02T00:00:00.000Z");
	// October 31st 2026 is a Saturday: Friday the 30th.
	EXPECT_EQ(next("cron(0 0 31W * ? *)", utc(2026, 10, 1)), "2026-10-30T00:00:00.000Z");
	// May 31st 2026 is a Sunday: the last weekday is Friday the 29th.
	EXPECT_EQ(next("cron(0 0 LW * ? *)", utc(2026, 5, 1)), "2026-05-29T00:00:00.000Z");
	// A weekday 15th is itself.
	EXPECT_EQ(next("cron(0 0 15W * ? *)", utc(2026, 12, 1)), "2026-12-15T00:00:00.000Z");
}

TEST(CronTest, YearsRunOut)
{
	EXPECT_EQ(next("cron(0 0 1 1 ? 2027)", utc(2026, 12, 5)), "2027-01-01T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 1 1 ? 2027)", utc(2027, 1, 1)), "none");
	EXPECT_EQ(next("cron(0 0 1 1 ? 2030-2032)", utc(2026, 12, 5)), "2030-01-01T00:00:00.000Z");
	EXPECT_EQ(next("cron(0 0 L 12 ? *)", utc(2199, 12, 31)), "none");
}

// UTC throughout, as DLM: the zone the daemon runs in, and its DST
// change (Berlin's on 2027-03-28 at 01:00 UTC), moves nothing.
TEST(CronTest, LocalTimeZoneAndDstMoveNothing)
{
	const char *old = getenv("TZ");
	std::string saved = old ? old : "";
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	EXPECT_EQ(next("cron(30 1 * * ? *)", utc(2027, 3, 28, 0, 45)), "2027-03-28T01:30:00.000Z");
	EXPECT_EQ(next("cron(30 1 * * ? *)", utc(2027, 10, 31, 0, 45)), "2027-10-31T01:30:00.000Z");
	if (old)
		setenv("TZ", saved.c_str(), 1);
	else
		unsetenv("TZ");
	tzset();
}

void expectRefused(const char *text, const char *says)
{
	auto c = CronExpression::parse(text);
	ASSERT_FALSE(c) << text << " was accepted";
	EXPECT_EQ(c.error().code, "InvalidParameterValue") << text;
	EXPECT_NE(c.error().message.find(says), std::string::npos) << text << ": " << c.error().message;
	EXPECT_EQ(c.error().message.find('\n'), std::string::npos) << text;
}

TEST(CronTest, RefusesWhatIsNotCronOrNotSupported)
{
	expectRefused("0 3 * * ? *", "is not of the form cron(");
	expectRefused("cron(0 3 * * ?)", "has 5 fields, not 6");
	expectRefused("cron(0 3 * * * *)", "exactly one of Day-of-month and Day-of-week");
	expectRefused("cron(0 3 ? * ? *)", "exactly one of Day-of-month and Day-of-week");
	expectRefused("cron(*/30 3 * * ? *)", "Minutes '*/30' must name one minute");
	expectRefused("cron(0,30 3 * * ? *)", "Minutes '0,30' must name one minute");
	expectRefused("cron(60 3 * * ? *)", "Minutes '60' is outside 0-59");
	expectRefused("cron(0 24 * * ? *)", "Hours '24' is outside 0-23");
	expectRefused("cron(0 3 0 * ? *)", "Day-of-month '0' is outside 1-31");
	expectRefused("cron(0 3 * 13 ? *)", "Month '13' is outside 1-12");
	expectRefused("cron(0 3 ? * 8 *)", "Day-of-week '8' is outside 1-7");
	expectRefused("cron(0 3 * * ? 1969)", "Year '1969' is outside 1970-2199");
	expectRefused("cron(0 3 * FOO ? *)", "Month 'FOO' is not a value");
	expectRefused("cron(0 3 20-10 * ? *)", "runs backwards");
	expectRefused("cron(0 3 1,,2 * ? *)", "empty list item");
	expectRefused("cron(0 3 */0 * ? *)", "has a step");
	expectRefused("cron(0 3 L-3 * ? *)", "is not supported");
	expectRefused("cron(0 3 L,15 * ? *)", "is not supported");
	expectRefused("cron(0 3 ? * 2#1,3#2 *)", "names no week");
	expectRefused("cron(0 3 ? * 3#6 *)", "names no week");
	expectRefused("cron(0 3 ? * 2L,3 *)", "is not supported");
}

} // namespace
} // namespace virtsnap::daemon::test
