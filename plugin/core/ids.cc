#include "ids.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <ctime>

#include "bytes.h"
#include "compiler.h"

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

Result<std::string> newSnapshotId()
{
	uint8_t raw[9];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return fail(errc::kInternal, "no randomness for a snapshot id");
	return "snap-" + toHex(raw).substr(0, 17);
}

std::string volumeIdFor(std::string_view instanceKey, std::string_view diskId)
{
	// Length-prefixed, so no two (instance, disk) pairs share an input.
	std::string input = "virtsnap-volume\n" + std::to_string(instanceKey.size()) + ":";
	input.append(instanceKey).append(std::to_string(diskId.size())).append(":").append(diskId);
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha256(), nullptr);
	return "vol-" + toHex(std::span(digest, len)).substr(0, 17);
}

bool isSnapshotId(std::string_view s)
{
	return isHexId(s, "snap-");
}

bool isSnapshotSetId(std::string_view s)
{
	return isHexId(s, "ss-");
}

bool isVolumeId(std::string_view s)
{
	return isHexId(s, "vol-");
}

Result<void> checkSnapshotId(std::string_view s)
{
	if (isSnapshotId(s))
		return {};
	VS_GCC12_BOGUS_RESTRICT_BEGIN
	return fail(errc::kSnapshotIdMalformed, "'" + std::string(s) + "' is not a snapshot id (snap- and 17 hex digits)");
	VS_GCC12_BOGUS_RESTRICT_END
}

std::string isoTimeNow()
{
	auto now = std::chrono::system_clock::now();
	auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
	time_t secs = time_t(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char buf[40];
	size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%03dZ", int(ms % 1000));
	return buf;
}

} // namespace virtsnap
