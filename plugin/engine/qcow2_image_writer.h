// A qcow2 restored through QEMU itself: qemu-img creates the image on the
// file we hold, and qemu-nbd, serving it writable on a unix socket in a
// private directory, writes into it what the restore sends. No raw image
// of the volume's size exists on the way, which ext4 could not hold past
// 16 TiB, and every byte is written once. Chunks the restore does not send
// (zeros, holes) stay unallocated clusters: the image stays sparse.
//
// With LUKS the image is encrypted by QEMU, so a volume restored from an
// encrypted snapshot never holds plaintext, not even in a temporary file.
// The passphrase reaches both programs as a QEMU `secret` object whose
// `file=` is a memfd we hold (core/secret_memfd.h): never argv, the
// environment or a file on disk.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/process.h"
#include "core/unique_fd.h"
#include "luks_settings.h"
#include "nbd_connection.h"

namespace virtsnap::engine {

class WorkDir;

class Qcow2ImageWriter
{
public:
	// Makes `imageFd` (an empty file we hold) a qcow2 of `size` bytes,
	// LUKS-encrypted when `luks` is given, and starts qemu-nbd on it.
	// `target` names the image in errors. qemu-nbd dies with us; a request
	// it leaves unanswered for `answerTimeout` ([hypervisor] timeout) fails
	// the write, the handshake or the flush.
	static Result<std::unique_ptr<Qcow2ImageWriter>> create(int imageFd, uint64_t size, const LuksSettings *luks,
								 const std::string &target,
								 std::chrono::milliseconds answerTimeout);
	// Kills qemu-nbd if finish() did not run: the image is then not whole.
	~Qcow2ImageWriter();
	Qcow2ImageWriter(const Qcow2ImageWriter &) = delete;
	Qcow2ImageWriter &operator=(const Qcow2ImageWriter &) = delete;

	// The volume's bytes at `offset`; safe from several threads.
	Result<void> write(std::span<const uint8_t> data, uint64_t offset);
	// Flushes, disconnects and waits for qemu-nbd to close the image.
	Result<void> finish();

private:
	// One NBD connection and the lock that keeps finish() from closing it
	// under a writer.
	struct Connection {
		std::unique_ptr<NbdConnection> nbd; // null once finished
		std::mutex mutex;
	};

	Qcow2ImageWriter() = default;
	Result<void> serve(int imageFd, const std::string &image, const std::string &object, const char *secretId);
	Result<void> connect();
	// Waits for the request `cookie` on `c` (or its failure to be sent,
	// -1) to complete; on a timeout the connection is given up on.
	Result<void> complete(NbdConnection &c, int64_t cookie, const std::string &what);

	std::string what_; // "qcow2" or "LUKS", for errors
	std::string target_;
	std::chrono::milliseconds answerTimeout_{0};
	std::unique_ptr<WorkDir> work_;
	std::string socket_;
	UniqueFd secret_;
	std::optional<Process> server_;
	std::vector<std::unique_ptr<Connection>> connections_;
	std::atomic<size_t> next_{0};
};

} // namespace virtsnap::engine
