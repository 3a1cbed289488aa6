#include "compressibility.h"

#include <array>
#include <cstring>

namespace virtsnap::store {

namespace {

constexpr size_t kSampleBytes = 16;
constexpr size_t kSamples = 128;
constexpr size_t kSampled = kSamples * kSampleBytes;
constexpr size_t kMinSampledSize = 2 * kSampled;
// The sample counts as random when its collision entropy, -log2(sum of
// p^2), is at least 7.5 bits a byte: sum(count^2) <= n^2 / 2^7.5. It is
// never above the Shannon entropy, so it errs towards compressing, and it
// needs no logarithm (the guess must cost far less than the zstd pass it
// saves: zstd -1 passes over random data at about 1.2 GB/s). 2048 uniformly
// random bytes measure 7.83 (the threshold is 26 standard deviations
// below); text 4 to 5, x86 code 5 to 6.5.
constexpr uint64_t kRandomSumOfSquares = uint64_t(kSampled) * kSampled * 1000 / 181019; // 2^7.5 = 181.019

// Whether two of the samples' 8-byte heads are equal, in a small open
// addressing table (the heads of random data are their own hash).
bool headsRepeat(const std::array<uint64_t, kSamples> &heads)
{
	constexpr size_t kSlots = 2 * kSamples;
	std::array<uint64_t, kSlots> table{};
	for (uint64_t h : heads) {
		// A zero head (8 zero bytes) is structure, and the table's empty mark.
		if (h == 0)
			return true;
		size_t i = size_t(h ^ (h >> 29)) % kSlots;
		while (table[i] != 0) {
			if (table[i] == h)
				return true;
			i = (i + 1) % kSlots;
		}
		table[i] = h;
	}
	return false;
}

} // namespace

bool worthCompressing(std::span<const uint8_t> data)
{
	if (data.size() < kMinSampledSize)
		return true;
	const size_t step = data.size() / kSamples;
	// Four histograms, so that consecutive bytes do not wait on one counter.
	std::array<std::array<uint32_t, 256>, 4> counts{};
	std::array<uint64_t, kSamples> heads;
	for (size_t i = 0; i < kSamples; i++) {
		const uint8_t *p = data.data() + i * step;
		for (size_t j = 0; j < kSampleBytes; j += 4) {
			counts[0][p[j]]++;
			counts[1][p[j + 1]]++;
			counts[2][p[j + 2]]++;
			counts[3][p[j + 3]]++;
		}
		std::memcpy(&heads[i], p, sizeof(heads[i]));
	}
	uint64_t sumOfSquares = 0;
	for (size_t b = 0; b < 256; b++) {
		uint64_t c = uint64_t(counts[0][b]) + counts[1][b] + counts[2][b] + counts[3][b];
		sumOfSquares += c * c;
	}
	if (sumOfSquares > kRandomSumOfSquares)
		return true;
	// A byte histogram cannot see repeats: random blocks written twice
	// (a copied file) compress well. Two equal 8-byte heads of random
	// data are a chance of 2^-48; equal heads mean structure.
	return headsRepeat(heads);
}

} // namespace virtsnap::store
