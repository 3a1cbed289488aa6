#include "resource_ids.h"

#include "core/bytes.h"
#include "crypto.h"

namespace virtsnap {

namespace {

constexpr size_t kDigits = 17;

std::string derived(std::string_view prefix, const std::string &input)
{
	auto digest = crypto::sha256(std::span((const uint8_t *)input.data(), input.size()));
	return std::string(prefix) + toHex(digest).substr(0, kDigits);
}

} // namespace

Result<std::string> newResourceId(std::string_view prefix)
{
	uint8_t raw[(kDigits + 1) / 2];
	VS_TRY(crypto::randomBytes(raw));
	return std::string(prefix) + toHex(raw).substr(0, kDigits);
}

std::string relatedId(std::string_view prefix, std::string_view id)
{
	std::string_view digits = id.size() >= kDigits ? id.substr(id.size() - kDigits) : id;
	return std::string(prefix).append(digits);
}

std::string volumeIdFor(std::string_view instanceKey, std::string_view diskId)
{
	// Length-prefixed, so no two (instance, disk) pairs share an input.
	std::string input = "virtsnap-volume\n" + std::to_string(instanceKey.size()) + ":";
	input.append(instanceKey).append(std::to_string(diskId.size())).append(":").append(diskId);
	return derived("vol-", input);
}

std::string instanceIdFor(std::string_view instanceKey)
{
	return derived("i-", std::string("virtsnap-instance\n").append(instanceKey));
}

} // namespace virtsnap
