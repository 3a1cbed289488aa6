// A cheap guess, from a sample, of whether compressing a chunk can pay.
// Random or already compressed bytes (encrypted file systems, media,
// archives, packages) cost a full compressor pass and come out no smaller;
// the guess costs a few percent of that pass (tests/bench/COMPRESSION.md).
#pragma once

#include <cstdint>
#include <span>

namespace virtsnap::store {

// False only when `data` looks like uniformly random bytes: 256 samples of
// 16 bytes spread over it hold no repeated sample and their bytes have an
// entropy near 8 bits. True for anything else, and for chunks under 8 KiB
// (too small to sample, and cheap to try).
bool worthCompressing(std::span<const uint8_t> data);

} // namespace virtsnap::store
