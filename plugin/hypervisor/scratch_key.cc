#include "scratch_key.h"

#include <array>
#include <cstdint>
#include <cstdio>

#include "crypto/crypto.h"

namespace virtsnap::hypervisor {

Result<std::string> randomScratchKey()
{
	std::array<uint8_t, 32> bytes{};
	VS_TRY(crypto::randomBytes(bytes));
	std::string key = crypto::base64(bytes);
	bytes.fill(0);
	return key;
}

Result<std::string> randomUuid()
{
	std::array<uint8_t, 16> b{};
	VS_TRY(crypto::randomBytes(b));
	b[6] = uint8_t((b[6] & 0x0f) | 0x40);
	b[8] = uint8_t((b[8] & 0x3f) | 0x80);
	char text[37];
	std::snprintf(text, sizeof text, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		      b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return std::string(text);
}

} // namespace virtsnap::hypervisor
