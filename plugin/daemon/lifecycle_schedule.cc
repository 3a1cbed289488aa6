#include "lifecycle_schedule.h"

#include <algorithm>
#include <cstdio>
#include <map>

namespace virtsnap::daemon {

// Calendar arithmetic throughout; every time here is UTC.
using namespace std::chrono;

namespace {

bool hasTag(const PolicyTags &tags, const std::string &key, const std::string &value)
{
	return std::any_of(tags.begin(), tags.end(), [&](const auto &t) { return t.first == key && t.second == value; });
}

UtcMillis addMonths(UtcMillis start, int count)
{
	sys_days day = floor<days>(start);
	year_month_day ymd(day);
	year_month ym = ymd.year() / ymd.month() + months{count};
	auto last = year_month_day_last(ym.year(), month_day_last(ym.month())).day();
	year_month_day moved = ym / std::min(ymd.day(), last);
	return UtcMillis(sys_days(moved) + (start - day));
}

bool carriesScheduleTags(const RetentionCandidate &s, const std::string &policyId, const std::string &scheduleName)
{
	return hasTag(s.tags, kPolicyIdTag, policyId) && hasTag(s.tags, kScheduleNameTag, scheduleName);
}

// Of one volume's snapshots from the schedule, those past the rule.
std::vector<const RetentionCandidate *> retireOfVolume(const RetainRule &rule, std::vector<const RetentionCandidate *> &mine,
					UtcTime now)
{
	std::sort(mine.begin(), mine.end(), [](auto *a, auto *b) {
		return a->startTime != b->startTime ? a->startTime > b->startTime : a->snapshotId > b->snapshotId;
	});
	std::vector<const RetentionCandidate *> retire;
	int newerCompleted = 0;
	for (const RetentionCandidate *s : mine) {
		if (!s->completed)
			continue;
		bool expired = rule.count > 0 ? newerCompleted >= rule.count
					      : newerCompleted > 0 && retentionExpiry(rule, s->startTime) <= now;
		if (expired)
			retire.push_back(s);
		newerCompleted++;
	}
	return retire;
}

} // namespace

std::optional<UtcMillis> parseUtcTime(const std::string &text)
{
	int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0, used = 0;
	if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ%n", &y, &mo, &d, &h, &mi, &sec, &ms, &used) != 7 ||
	    used != int(text.size()))
		return std::nullopt;
	year_month_day ymd = year{y} / month(unsigned(mo)) / day(unsigned(d));
	if (!ymd.ok() || h > 23 || mi > 59 || sec > 59 || ms < 0)
		return std::nullopt;
	return UtcMillis(sys_days(ymd) + hours{h} + minutes{mi} + seconds{sec} + milliseconds{ms});
}

std::optional<UtcTime> nextRunAfter(const CreateRule &rule, UtcTime t)
{
	if (rule.cron)
		return rule.cron->nextAfter(t);
	sys_days day = floor<days>(t);
	minutes step = hours{rule.intervalHours};
	// The first slot of the day: Times[0] less whole intervals.
	minutes first = minutes{rule.startMinute} % step;
	for (;; day += days{1})
		for (minutes slot = first; slot < days{1}; slot += step)
			if (UtcTime(day + slot) > t)
				return UtcTime(day + slot);
}

bool isDue(const CreateRule &rule, UtcTime lastRun, UtcTime now)
{
	auto next = nextRunAfter(rule, lastRun);
	return next && *next <= now;
}

bool retentionMayDelete(const RetentionCandidate &snapshot, const std::string &policyId,
			const std::string &scheduleName)
{
	return carriesScheduleTags(snapshot, policyId, scheduleName) && !snapshot.locked;
}

UtcMillis retentionExpiry(const RetainRule &rule, UtcMillis start)
{
	switch (rule.unit) {
	case RetainUnit::Days: return start + days{rule.interval};
	case RetainUnit::Weeks: return start + weeks{rule.interval};
	case RetainUnit::Months: return addMonths(start, rule.interval);
	case RetainUnit::Years: return addMonths(start, rule.interval * 12);
	}
	return start;
}

std::vector<std::string> snapshotsToRetire(const RetainRule &rule, const std::string &policyId,
					   const std::string &scheduleName,
					   std::vector<RetentionCandidate> snapshots, UtcTime now)
{
	std::map<std::string, std::vector<const RetentionCandidate *>> byVolume;
	for (const RetentionCandidate &s : snapshots)
		if (carriesScheduleTags(s, policyId, scheduleName))
			byVolume[s.volumeId].push_back(&s);
	// Snapshots retention may not delete still count as kept: skipping
	// one never makes retention take a newer one instead.
	std::vector<std::string> retire;
	for (auto &[volume, mine] : byVolume)
		for (const RetentionCandidate *s : retireOfVolume(rule, mine, now))
			if (retentionMayDelete(*s, policyId, scheduleName))
				retire.push_back(s->snapshotId);
	return retire;
}

} // namespace virtsnap::daemon
