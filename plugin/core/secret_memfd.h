// A secret (a LUKS passphrase) handed to a QEMU program without argv, the
// environment or a file on disk: a sealed memfd the child keeps
// (SpawnOptions::keepFds) and reads through a `secret` object's `file=`.
#pragma once

#include <string>

#include "error.h"
#include "unique_fd.h"

namespace virtsnap {

// A memfd holding `secret`, sealed against any change.
Result<UniqueFd> secretMemfd(const std::string &secret);
// QEMU's --object for it: "secret,id=ID,file=/proc/self/fd/N,format=raw".
std::string secretObject(const std::string &id, int fd);

} // namespace virtsnap
