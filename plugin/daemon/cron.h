// AWS's cron(...) schedule expressions, as Amazon Data Lifecycle Manager
// (and EventBridge) take them: six fields, Minutes Hours Day-of-month Month
// Day-of-week Year, always in UTC. Times are UTC seconds on the system
// clock (sys_seconds), so no local time zone, and so no DST change, can
// move a schedule: DLM's schedules do not move either.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace virtsnap::daemon {

using UtcTime = std::chrono::sys_seconds;

// The values one field allows, as a bit per value from min to max.
struct CronValues {
	int min = 0;
	std::vector<bool> on;
	bool has(int v) const { return v >= min && v - min < int(on.size()) && on[v - min]; }
};

class CronExpression
{
public:
	// Parses "cron(0 3 ? * MON-FRI *)". Supported: , - * / in every field,
	// month and weekday names, ? in one of the two day fields, and in
	// Day-of-month L, LW and nW, in Day-of-week L, nL and n#k, each alone
	// in its field. Refused with one line naming the field: anything else
	// (L-n offsets, lists mixing L, W or #), a value out of range, both or
	// neither day field '?', and minutes other than one value, since DLM
	// runs a schedule at most once an hour.
	static Result<CronExpression> parse(std::string_view text);

	// The first minute strictly after `t` that the expression names;
	// nullopt once none is left (its years are past, or past 2199).
	std::optional<UtcTime> nextAfter(UtcTime t) const;

	const std::string &text() const { return text_; }

private:
	Result<void> parseDayOfMonth(std::string_view field);
	Result<void> parseDayOfWeek(std::string_view field);
	bool dayMatches(std::chrono::year_month_day ymd) const;
	bool dayOfMonthMatches(std::chrono::year_month_day ymd) const;
	bool dayOfWeekMatches(std::chrono::year_month_day ymd) const;
	std::optional<std::chrono::minutes> firstTimeOfDay(std::chrono::minutes from) const;

	std::string text_;
	CronValues minutes_, hours_, daysOfMonth_, months_, daysOfWeek_, years_;
	bool useDayOfWeek_ = false; // Day-of-month is '?'
	bool lastDay_ = false;      // L in Day-of-month
	bool lastWeekday_ = false;  // LW
	int nearestWeekday_ = 0;    // nW: the weekday nearest day n, within its month
	int lastWeekdayOf_ = 0;     // nL in Day-of-week (1 = SUN): the month's last such day
	int nthWeekday_ = 0;        // n#k: weekday n ...
	int nth_ = 0;               // ... the k-th of its month
};

} // namespace virtsnap::daemon
