#include "bytes.h"

#include <algorithm>
#include <cstring>

namespace virtsnap {

std::string toHex(std::span<const uint8_t> data)
{
	static const char digits[] = "0123456789abcdef";
	std::string out;
	out.reserve(data.size() * 2);
	for (uint8_t b : data) {
		out.push_back(digits[b >> 4]);
		out.push_back(digits[b & 15]);
	}
	return out;
}

bool isAllZero(std::span<const uint8_t> data)
{
	// The buffer compared with itself shifted by one word: zero iff the
	// first word is zero and every word equals the next. memcmp runs at
	// memory speed where a byte loop would not.
	if (data.size() < 16)
		return std::all_of(data.begin(), data.end(), [](uint8_t b) { return b == 0; });
	uint64_t first;
	std::memcpy(&first, data.data(), 8);
	return first == 0 && std::memcmp(data.data(), data.data() + 8, data.size() - 8) == 0;
}

std::optional<Bytes> fromHex(std::string_view hex)
{
	auto nibble = [](char c) -> int {
		if (c >= '0' && c <= '9')
			return c - '0';
		if (c >= 'a' && c <= 'f')
			return c - 'a' + 10;
		return -1;
	};
	if (hex.size() % 2)
		return std::nullopt;
	Bytes out(hex.size() / 2);
	for (size_t i = 0; i < out.size(); i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return std::nullopt;
		out[i] = uint8_t(hi << 4 | lo);
	}
	return out;
}

} // namespace virtsnap
