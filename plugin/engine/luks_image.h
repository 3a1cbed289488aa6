// A LUKS-encrypted qcow2 written through QEMU's own encryption, so that a
// volume restored from an encrypted snapshot never holds plaintext, not
// even in a temporary file: qemu-img creates the image, and qemu-nbd,
// serving it writable on a unix socket in a private directory, encrypts
// what the restore writes into it.
//
// The passphrase reaches both programs as a QEMU `secret` object whose
// `file=` is a memfd we hold (core/secret_memfd.h): never argv, the
// environment or a file on disk.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "core/error.h"
#include "core/process.h"
#include "core/unique_fd.h"

struct nbd_handle;

namespace virtsnap::engine {

class WorkDir;

// QEMU's default time for LUKS key derivation ([restore] luks-iter-time).
inline constexpr std::chrono::milliseconds kDefaultLuksIterTime{2000};

struct LuksSettings {
	std::string passphrase; // the volume's new passphrase, bytes as given
	std::chrono::milliseconds iterTime = kDefaultLuksIterTime;
};

class LuksImageWriter
{
public:
	// Makes `imageFd` (an empty file we hold) a LUKS qcow2 of `size` bytes
	// and starts qemu-nbd on it.
	static Result<std::unique_ptr<LuksImageWriter>> create(int imageFd, uint64_t size, const LuksSettings &luks);
	// Stops qemu-nbd if finish() did not run: the image is then not whole.
	~LuksImageWriter();

	// Plaintext at `offset`; safe from several threads.
	Result<void> write(std::span<const uint8_t> data, uint64_t offset);
	// Flushes, disconnects and waits for qemu-nbd to close the image.
	Result<void> finish();

private:
	LuksImageWriter() = default;

	std::unique_ptr<WorkDir> work_;
	UniqueFd secret_;
	std::optional<Process> server_;
	nbd_handle *nbd_ = nullptr;
	std::mutex mutex_;
};

} // namespace virtsnap::engine
