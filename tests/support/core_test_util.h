// Helpers for tests of code built on plugin/core (Result, Bytes) and
// plugin/crypto: header only, so the support library itself needs nothing of
// them, and a binary that includes this links what it uses through the
// module it tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/error.h"
#include "crypto/crypto.h"
#include "tests/support/random_bytes.h"

namespace virtsnap::test {

// "ok" or the error line: streamed after an assertion, so a failure names
// the error the code returned.
template<typename T>
std::string describe(const Result<T> &r)
{
	return r ? std::string("ok") : r.error().toString();
}

// The error code, or "ok": one assertion checks both that it failed and how.
template<typename T>
std::string codeOf(const Result<T> &r)
{
	return r ? std::string("ok") : r.error().code;
}

// Incompressible bytes, reproducible from `seed` so a failure reproduces.
inline Bytes randomData(size_t n, uint64_t seed)
{
	std::mt19937_64 rng(seed);
	Bytes out(n);
	fillRandom(rng, out);
	return out;
}

// A fresh random key; a failure of the current test when there is none.
inline crypto::SecretKey randomKey()
{
	auto k = crypto::SecretKey::random();
	EXPECT_TRUE(k);
	return k.value_or(crypto::SecretKey());
}

inline std::span<const uint8_t> asBytes(std::string_view s)
{
	return std::span(reinterpret_cast<const uint8_t *>(s.data()), s.size());
}

} // namespace virtsnap::test
