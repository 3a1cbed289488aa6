// qemu-img create of a LUKS-encrypted qcow2 whose passphrase is a memfd
// secret (secret_memfd.h): the restored volumes of encrypted snapshots and
// the capture scratch files of encrypted disks are made this way.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "error.h"

namespace virtsnap {

struct LuksQcow2 {
	std::string image;        // a path, or heldOpenPath() of a file we hold
	uint64_t size = 0;
	int secretFd = -1;        // the memfd holding the passphrase
	std::chrono::milliseconds iterTime{2000};
	std::string extraOptions; // more -o options ("cluster_size=65536"), or ""
	std::vector<int> keepFds; // besides secretFd: the image's, when held open
};

// `errorCode` is what a failure is; its message is qemu-img's last line.
Result<void> createLuksQcow2(const LuksQcow2 &spec, const char *errorCode);

} // namespace virtsnap
