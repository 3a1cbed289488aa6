// Reproducible random bytes, for test data and the benchmark's disks: the
// same seed gives the same bytes on every host, and they never compress or
// dedup. Header only and free of gtest, so tests/bench's programs use it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace virtsnap::test {

// Fills `out` with the words `rng()` returns, eight bytes each, least
// significant first; the tail comes from one more word, which is drawn even
// when there is no tail (the benchmark's data depends on that count).
template<typename Generator>
void fillRandom(Generator &rng, std::span<uint8_t> out)
{
	size_t i = 0;
	for (; i + 8 <= out.size(); i += 8) {
		uint64_t v = rng();
		for (size_t b = 0; b < 8; b++)
			out[i + b] = uint8_t(v >> (8 * b));
	}
	uint64_t v = rng();
	for (; i < out.size(); i++, v >>= 8)
		out[i] = uint8_t(v);
}

} // namespace virtsnap::test
