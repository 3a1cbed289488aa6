// How a restore encrypts the volume it writes (qcow2_image_writer.h).
#pragma once

#include <chrono>
#include <string>

namespace virtsnap::engine {

// QEMU's default time for LUKS key derivation ([restore] luks-iter-time).
inline constexpr std::chrono::milliseconds kDefaultLuksIterTime{2000};

struct LuksSettings {
	std::string passphrase; // the volume's new passphrase, bytes as given
	std::chrono::milliseconds iterTime = kDefaultLuksIterTime;
};

} // namespace virtsnap::engine
