// The key of an encrypted disk's capture scratch. The scratch receives the
// guest's decrypted data that the guest overwrites while a capture is read,
// so it is encrypted too (a LUKS qcow2), under a random key that lives in
// the hypervisor's memory only and goes with the scratch: a scratch file a
// crash leaves behind cannot be read by anyone.
#pragma once

#include <chrono>
#include <string>

#include "core/error.h"

namespace virtsnap::hypervisor {

// A random key needs no slow key derivation.
inline constexpr std::chrono::milliseconds kScratchLuksIterTime{10};

// 256 random bits as base64 text: QEMU takes a LUKS passphrase as UTF-8
// text only.
Result<std::string> randomScratchKey();
// A random (version 4) UUID, "8-4-4-4-12" hex: a libvirt secret's, chosen
// here so that a capture's cleanup record names it before it exists.
Result<std::string> randomUuid();

} // namespace virtsnap::hypervisor
