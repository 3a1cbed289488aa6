#include "ids.h"

#include <chrono>
#include <ctime>


namespace virtsnap {

namespace {

bool isHexId(std::string_view s, std::string_view prefix)
{
	if (s.size() != prefix.size() + 17 || s.substr(0, prefix.size()) != prefix)
		return false;
	for (char c : s.substr(prefix.size()))
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	return true;
}

} // namespace

bool isSnapshotId(std::string_view s)
{
	return isHexId(s, "snap-");
}

bool isSnapshotSetId(std::string_view s)
{
	return isHexId(s, "ss-");
}

bool isPolicyId(std::string_view s)
{
	return isHexId(s, "policy-");
}

bool isVolumeId(std::string_view s)
{
	return isHexId(s, "vol-");
}

Result<void> checkSnapshotId(std::string_view s)
{
	if (isSnapshotId(s))
		return {};
	return fail(errc::kSnapshotIdMalformed, "'" + std::string(s) + "' is not a snapshot id (snap- and 17 hex digits)");
}

std::string isoTimeNow()
{
	return isoTime(std::chrono::system_clock::now());
}

std::string isoTime(std::chrono::system_clock::time_point now)
{
	auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
	time_t secs = time_t(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char buf[40];
	size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%03dZ", int(ms % 1000));
	return buf;
}

Result<std::chrono::system_clock::time_point> parseIsoTime(std::string_view text, const std::string &what)
{
	std::string t(text);
	struct tm tm {};
	const char *rest = ::strptime(t.c_str(), "%Y-%m-%d", &tm);
	if (rest && *rest == 'T')
		rest = ::strptime(rest + 1, "%H:%M:%S", &tm);
	if (rest && *rest == '.')
		while (*++rest >= '0' && *rest <= '9') {
		}
	if (rest && *rest == 'Z')
		rest++;
	if (!rest || *rest != '\0')
		return fail(errc::kInvalidParameterValue,
			    what + " '" + t + "' is not a UTC time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)");
	return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

} // namespace virtsnap
