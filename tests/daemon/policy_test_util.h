// Times for the policy tests: a fake clock is a time the test writes down.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "core/ids.h"
#include "daemon/cron.h"

namespace virtsnap::daemon::test {

inline UtcTime utc(int y, unsigned m, unsigned d, int h = 0, int min = 0)
{
	using namespace std::chrono;
	return UtcTime(sys_days(year{y} / month{m} / day{d}) + hours{h} + minutes{min});
}

// "2026-12-06T03:00:00.000Z", or "none": what a failed expectation prints.
inline std::string show(std::optional<UtcTime> t)
{
	return t ? isoTime(*t) : std::string("none");
}

inline std::string show(std::optional<std::chrono::sys_time<std::chrono::milliseconds>> t)
{
	return t ? isoTime(*t) : std::string("none");
}

} // namespace virtsnap::daemon::test
