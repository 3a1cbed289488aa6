// The test guest of tests/guest, built from Debian packages once per test
// binary (build-guest caches across runs too).
#pragma once

#include <string>

namespace virtsnap::test {

// The directory holding vmlinux and initrd.img; "" with `error` set when
// the guest cannot be built.
const std::string &guestCache(std::string *error);

} // namespace virtsnap::test
