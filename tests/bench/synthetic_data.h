// The generator of the benchmarks' bytes, shared by chunk-size-bench and
// bench-data so that both measure the same kind of disk (CHUNK_SIZE.md
// compares their numbers): a seedable splitmix64, random bytes from it that
// never compress or dedup (fillRandom of tests/support), and text-like data.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>

#include "tests/support/random_bytes.h"

namespace virtsnap::bench {

using virtsnap::test::fillRandom;

// splitmix64: fast, seedable, and good enough that the "random" part of the
// disk is incompressible and never dedups.
class Rng
{
public:
	explicit Rng(uint64_t seed) : state_(seed) {}
	uint64_t next()
	{
		uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		return z ^ (z >> 31);
	}
	uint64_t operator()() { return next(); } // for fillRandom
	uint64_t below(uint64_t n) { return next() % n; }
	double unit() { return double(next() >> 11) / double(1ull << 53); }

private:
	uint64_t state_;
};

// Text-like data: 40% words of a small dictionary, 30% decimal numbers,
// 30% hex ids, like logs and database rows. The mix was tuned so that zstd
// level 1 compresses it about 2:1 at every chunk size measured.
inline void fillText(Rng &rng, std::span<uint8_t> out)
{
	static const char *const kWords[] = {
		"the", "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at", "from",
		"that", "this", "be", "or", "are", "an", "it", "not", "was", "which", "all", "request",
		"response", "user", "error", "warning", "info", "debug", "server", "client", "session",
		"table", "index", "value", "key", "record", "page", "block", "file", "directory", "kernel",
		"memory", "process", "thread", "socket", "packet", "buffer", "cache", "disk", "volume",
		"snapshot", "backup", "restore", "commit", "rollback", "transaction", "query", "select",
		"insert", "update", "delete"};
	constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);
	size_t i = 0;
	char token[32];
	while (i < out.size()) {
		uint64_t r = rng.next();
		size_t len = 0;
		uint32_t kind = uint32_t(r & 0xffff);
		if (kind < 19661) { // 30%: hex id of 8 to 16 digits
			size_t digits = 8 + (r >> 16) % 9;
			uint64_t v = rng.next();
			for (size_t k = 0; k < digits; k++, v >>= 4)
				token[len++] = "0123456789abcdef"[v & 15];
		} else if (kind < 39322) { // 30%: decimal number of 1 to 8 digits
			size_t digits = 1 + (r >> 16) % 8;
			uint64_t v = rng.next();
			for (size_t k = 0; k < digits; k++, v /= 10)
				token[len++] = char('0' + v % 10);
		} else {
			const char *w = kWords[(r >> 16) % kWordCount];
			len = std::strlen(w);
			std::memcpy(token, w, len);
		}
		token[len++] = (r >> 40) % 12 == 0 ? '\n' : ' ';
		size_t n = std::min(len, out.size() - i);
		std::memcpy(out.data() + i, token, n);
		i += n;
	}
}

} // namespace virtsnap::bench
