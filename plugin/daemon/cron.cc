#include "cron.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace virtsnap::daemon {

// Calendar arithmetic throughout; every time here is UTC.
using namespace std::chrono;

namespace {

constexpr std::array<const char *, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
						      "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<const char *, 7> kDayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct Field {
	const char *name;
	int min;
	int max;
	const char *const *names = nullptr; // names[i] is min + i
	size_t nameCount = 0;
};

constexpr Field kMinutes{"Minutes", 0, 59};
constexpr Field kHours{"Hours", 0, 23};
constexpr Field kDayOfMonth{"Day-of-month", 1, 31};
constexpr Field kMonth{"Month", 1, 12, kMonthNames.data(), kMonthNames.size()};
constexpr Field kDayOfWeek{"Day-of-week", 1, 7, kDayNames.data(), kDayNames.size()};
constexpr Field kYear{"Year", 1970, 2199};

std::unexpected<Error> bad(const Field &field, std::string_view text, const std::string &why)
{
	return fail(errc::kInvalidParameterValue,
		    std::string("CronExpression: ") + field.name + " '" + std::string(text) + "' " + why);
}

std::optional<int> number(std::string_view s)
{
	int v = 0;
	auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
	if (ec != std::errc() || end != s.data() + s.size() || s.empty())
		return std::nullopt;
	return v;
}

Result<int> value(const Field &field, std::string_view s)
{
	for (size_t i = 0; i < field.nameCount; i++)
		if (s == field.names[i])
			return field.min + int(i);
	auto v = number(s);
	if (!v)
		return bad(field, s, "is not a value of the field");
	if (*v < field.min || *v > field.max)
		return bad(field, s, "is outside " + std::to_string(field.min) + "-" + std::to_string(field.max));
	return *v;
}

// One comma-separated item: *, v, a-b, with an optional /step.
Result<void> addItem(const Field &field, std::string_view item, CronValues &values)
{
	int step = 1;
	if (auto slash = item.find('/'); slash != std::string_view::npos) {
		auto s = number(item.substr(slash + 1));
		if (!s || *s < 1 || *s > field.max)
			return bad(field, item, "has a step that is not 1-" + std::to_string(field.max));
		step = *s;
		item = item.substr(0, slash);
	}
	int from = field.min, to = field.max;
	if (item != "*") {
		auto dash = item.find('-');
		VS_ASSIGN(from, value(field, item.substr(0, dash)));
		to = from;
		if (dash != std::string_view::npos) {
			VS_ASSIGN(to, value(field, item.substr(dash + 1)));
		} else if (step > 1) {
			to = field.max; // "5/15": from 5 on, every 15
		}
		if (to < from)
			return bad(field, item, "is a range that runs backwards");
	}
	for (int v = from; v <= to; v += step)
		values.on[v - field.min] = true;
	return {};
}

Result<CronValues> parseValues(const Field &field, std::string_view text)
{
	CronValues values{field.min, std::vector<bool>(field.max - field.min + 1)};
	for (size_t start = 0;;) {
		size_t comma = text.find(',', start);
		std::string_view item = text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
		if (item.empty())
			return bad(field, text, "has an empty list item");
		VS_TRY(addItem(field, item, values));
		if (comma == std::string_view::npos)
			return values;
		start = comma + 1;
	}
}

std::vector<std::string_view> splitFields(std::string_view s)
{
	std::vector<std::string_view> fields;
	size_t i = 0;
	while (i < s.size()) {
		while (i < s.size() && s[i] == ' ')
			i++;
		size_t j = s.find(' ', i);
		if (i < s.size())
			fields.push_back(s.substr(i, j == s.npos ? s.npos : j - i));
		i = j == s.npos ? s.size() : j;
	}
	return fields;
}

unsigned lastDayOf(year_month ym)
{
	return unsigned(year_month_day_last(ym.year(), month_day_last(ym.month())).day());
}

int awsWeekday(year_month_day ymd)
{
	return int(weekday(sys_days(ymd)).c_encoding()) + 1; // 1 = SUN, as AWS counts
}

} // namespace

Result<CronExpression> CronExpression::parse(std::string_view text)
{
	if (text.size() < 6 || text.substr(0, 5) != "cron(" || text.back() != ')')
		return fail(errc::kInvalidParameterValue, "CronExpression: '" + std::string(text) +
								  "' is not of the form cron(Minutes Hours Day-of-month "
								  "Month Day-of-week Year)");
	auto fields = splitFields(text.substr(5, text.size() - 6));
	if (fields.size() != 6)
		return fail(errc::kInvalidParameterValue, "CronExpression: '" + std::string(text) + "' has " +
								  std::to_string(fields.size()) + " fields, not 6");
	CronExpression cron;
	cron.text_ = std::string(text);
	VS_ASSIGN(cron.minutes_, parseValues(kMinutes, fields[0]));
	if (std::count(cron.minutes_.on.begin(), cron.minutes_.on.end(), true) != 1)
		return bad(kMinutes, fields[0], "must name one minute: a schedule runs at most once an hour");
	VS_ASSIGN(cron.hours_, parseValues(kHours, fields[1]));
	VS_ASSIGN(cron.months_, parseValues(kMonth, fields[3]));
	VS_ASSIGN(cron.years_, parseValues(kYear, fields[5]));
	if ((fields[2] == "?") == (fields[4] == "?"))
		return fail(errc::kInvalidParameterValue, "CronExpression: exactly one of Day-of-month and "
							  "Day-of-week must be '?'");
	cron.useDayOfWeek_ = fields[2] == "?";
	if (cron.useDayOfWeek_)
		VS_TRY(cron.parseDayOfWeek(fields[4]));
	else
		VS_TRY(cron.parseDayOfMonth(fields[2]));
	return cron;
}

Result<void> CronExpression::parseDayOfMonth(std::string_view f)
{
	if (f == "L" || f == "LW") {
		lastDay_ = f == "L";
		lastWeekday_ = f == "LW";
		return {};
	}
	if (f.size() > 1 && f.back() == 'W') {
		VS_ASSIGN(nearestWeekday_, value(kDayOfMonth, f.substr(0, f.size() - 1)));
		return {};
	}
	if (f.find_first_of("LW#") != f.npos)
		return bad(kDayOfMonth, f, "is not supported: L, LW and nW only stand alone");
	VS_ASSIGN(daysOfMonth_, parseValues(kDayOfMonth, f));
	return {};
}

Result<void> CronExpression::parseDayOfWeek(std::string_view f)
{
	if (f == "L")
		f = "7"; // L alone is the week's last day: every Saturday, as Quartz has it
	if (f.size() > 1 && f.back() == 'L') {
		VS_ASSIGN(lastWeekdayOf_, value(kDayOfWeek, f.substr(0, f.size() - 1)));
		return {};
	}
	if (auto hash = f.find('#'); hash != f.npos) {
		VS_ASSIGN(nthWeekday_, value(kDayOfWeek, f.substr(0, hash)));
		auto k = number(f.substr(hash + 1));
		if (!k || *k < 1 || *k > 5)
			return bad(kDayOfWeek, f, "names no week of a month (n#1 to n#5)");
		nth_ = *k;
		return {};
	}
	if (f.find_first_of("LW#") != f.npos)
		return bad(kDayOfWeek, f, "is not supported: L, nL and n#k only stand alone");
	VS_ASSIGN(daysOfWeek_, parseValues(kDayOfWeek, f));
	return {};
}

bool CronExpression::dayOfMonthMatches(year_month_day ymd) const
{
	unsigned d = unsigned(ymd.day());
	unsigned last = lastDayOf(ymd.year() / ymd.month());
	if (lastDay_)
		return d == last;
	if (lastWeekday_ || nearestWeekday_ != 0) {
		unsigned target = lastWeekday_ ? last : unsigned(nearestWeekday_);
		if (target > last)
			return false; // 31W in a 30-day month: no such day to be near
		int wd = awsWeekday(ymd.year() / ymd.month() / day(target));
		// The nearest weekday never leaves the month: a Saturday the 1st
		// goes to Monday the 3rd, a Sunday the last to the Friday before.
		if (wd == 7)
			target = target == 1 ? 3 : target - 1;
		else if (wd == 1)
			target = target == last ? target - 2 : target + 1;
		return d == target;
	}
	return daysOfMonth_.has(int(d));
}

bool CronExpression::dayOfWeekMatches(year_month_day ymd) const
{
	int wd = awsWeekday(ymd);
	unsigned d = unsigned(ymd.day());
	if (lastWeekdayOf_ != 0)
		return wd == lastWeekdayOf_ && d + 7 > lastDayOf(ymd.year() / ymd.month());
	if (nth_ != 0)
		return wd == nthWeekday_ && int((d - 1) / 7 + 1) == nth_;
	return daysOfWeek_.has(wd);
}

bool CronExpression::dayMatches(year_month_day ymd) const
{
	return useDayOfWeek_ ? dayOfWeekMatches(ymd) : dayOfMonthMatches(ymd);
}

std::optional<minutes> CronExpression::firstTimeOfDay(minutes from) const
{
	for (int h = int(from.count() / 60); h < 24; h++) {
		if (!hours_.has(h))
			continue;
		for (int m = h == from.count() / 60 ? int(from.count() % 60) : 0; m < 60; m++)
			if (minutes_.has(m))
				return hours{h} + minutes{m};
	}
	return std::nullopt;
}

std::optional<UtcTime> CronExpression::nextAfter(UtcTime t) const
{
	auto start = floor<minutes>(t) + minutes{1};
	sys_days d = floor<days>(start);
	minutes from = duration_cast<minutes>(start - d);
	while (true) {
		year_month_day ymd(d);
		int y = int(ymd.year());
		if (y > kYear.max)
			return std::nullopt;
		if (!years_.has(y)) {
			d = sys_days(year{y + 1} / January / 1);
		} else if (!months_.has(int(unsigned(ymd.month())))) {
			d = sys_days((ymd.year() / ymd.month() + months{1}) / 1);
		} else if (dayMatches(ymd)) {
			if (auto at = firstTimeOfDay(from))
				return UtcTime(d + *at);
			d += days{1};
		} else {
			d += days{1};
		}
		from = minutes{0};
	}
}

} // namespace virtsnap::daemon
