// Byte helpers: hex, fixed-width little-endian integers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace virtsnap {

using Bytes = std::vector<uint8_t>;

// EBS counts volume sizes in GiB.
inline constexpr uint64_t kGiB = uint64_t(1) << 30;

std::string toHex(std::span<const uint8_t> data);
// True when every byte is zero (such chunks are never stored).
bool isAllZero(std::span<const uint8_t> data);
// nullopt unless `hex` is an even number of [0-9a-f] digits.
std::optional<Bytes> fromHex(std::string_view hex);

inline void putLe32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = uint8_t(v >> (8 * i));
}
inline void putLe64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = uint8_t(v >> (8 * i));
}
inline uint32_t getLe32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= uint32_t(p[i]) << (8 * i);
	return v;
}
inline uint64_t getLe64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= uint64_t(p[i]) << (8 * i);
	return v;
}

} // namespace virtsnap
