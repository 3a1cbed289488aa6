// A cheap guess, from a sample, of whether compressing a chunk can pay.
// Random or already compressed bytes (encrypted file systems, media,
// archives, packages) cost a full compressor pass and come out no smaller;
// the guess costs a few percent of that pass (tests/bench/COMPRESSION.md).
#pragma once

#include <cstdint>
#include <span>

namespace virtsnap::store {

// False only when `data` looks like uniformly random bytes: 128 samples of
// 16 bytes spread over it hold no repeated sample and their bytes have a
// (collision) entropy of at least 7.5 bits. True for anything else, and
// for chunks under 4 KiB (too small to sample, and cheap to try).
bool worthCompressing(std::span<const uint8_t> data);

} // namespace virtsnap::store
