#include "qcow2_image_writer.h"

#include <libnbd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "core/file_util.h"
#include "core/luks_qcow2.h"
#include "core/secret_memfd.h"
#include "core/socket_probe.h"
#include "work_dir.h"

namespace virtsnap::engine {

namespace {

constexpr const char *kQcow2WriterSecretId = "vssec0";
// Opening a LUKS image derives its key first: iter-time, many times over
// on a loaded host.
constexpr std::chrono::seconds kQcow2WriterStartLimit{120};
// Connections to qemu-nbd, each with one request in flight: one alone
// leaves qemu-nbd idle while the next request is made and sent, and the
// restore's workers (two per core) queue on its lock.
constexpr size_t kQcow2WriterConnections = 4;

std::unexpected<Error> qcow2WriterFail(const std::string &what)
{
	const char *msg = nbd_get_error();
	return fail(errc::kIo, what + ": " + (msg ? msg : "unknown NBD error"));
}

// What qemu-nbd said on stderr before it died, for the error.
std::string qemuNbdSaid(Process &server)
{
	std::string out;
	char buf[4096];
	for (ssize_t n; (n = ::read(server.stderrPipe().get(), buf, sizeof buf)) > 0;)
		out.append(buf, size_t(n));
	return lastLine(out);
}

} // namespace

Result<std::unique_ptr<Qcow2ImageWriter>> Qcow2ImageWriter::create(int imageFd, uint64_t size, const LuksSettings *luks)
{
	std::unique_ptr<Qcow2ImageWriter> w(new Qcow2ImageWriter());
	// qemu-img and qemu-nbd open the file we hold, not its name: the
	// directory may be the caller's, who could swap a symlink in.
	const std::string image = heldOpenPath(imageFd);
	if (!luks) {
		w->what_ = "qcow2";
		VS_TRY(runProgram({"qemu-img", "create", "-q", "-f", "qcow2", image, std::to_string(size)}, errc::kIo,
				  {imageFd}));
		VS_TRY(w->serve(imageFd, image, "", nullptr));
		return w;
	}
	w->what_ = "LUKS";
	if (luks->passphrase.empty())
		return fail(errc::kInvalidParameterValue, "the LUKS passphrase is empty");
	VS_ASSIGN(w->secret_, secretMemfd(luks->passphrase));
	auto made = createLuksQcow2({image, size, w->secret_.get(), luks->iterTime, "", {imageFd}}, errc::kIo);
	if (!made)
		return fail(made.error().code, "cannot create the LUKS image: " + made.error().message);
	VS_TRY(w->serve(imageFd, image, secretObject(kQcow2WriterSecretId, w->secret_.get()), kQcow2WriterSecretId));
	return w;
}

Result<void> Qcow2ImageWriter::serve(int imageFd, const std::string &image, const std::string &object,
				     const char *secretId)
{
	VS_ASSIGN(work_, WorkDir::create());
	socket_ = (work_->path() / "image.sock").string();
	std::string opts = "driver=qcow2,file.driver=file,file.filename=" + image;
	std::vector<std::string> argv{"qemu-nbd", "--persistent",
				      "--shared=" + std::to_string(kQcow2WriterConnections)};
	if (secretId) {
		opts += std::string(",encrypt.key-secret=") + secretId;
		argv.insert(argv.end(), {"--object", object});
	}
	argv.insert(argv.end(), {"--image-opts", opts, "--socket", socket_});
	SpawnOptions options;
	options.err = Stdio::pipe();
	options.keepFds = {imageFd};
	if (secretId)
		options.keepFds.push_back(secret_.get());
	auto server = Process::spawn(argv, options);
	if (!server)
		return fail(errc::kIo, "cannot start qemu-nbd for the new " + what_ + " image: " + server.error().message);
	server_.emplace(std::move(*server));
	auto deadline = std::chrono::steady_clock::now() + kQcow2WriterStartLimit;
	while (!socketAnswers(socket_)) {
		if (server_->hasExited())
			return fail(errc::kIo, "qemu-nbd could not serve the new " + what_ + " image: " + qemuNbdSaid(*server_));
		if (std::chrono::steady_clock::now() > deadline)
			return fail(errc::kIo, "qemu-nbd did not serve the new " + what_ + " image within " +
						       std::to_string(kQcow2WriterStartLimit.count()) + " s");
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
	return connect();
}

Result<void> Qcow2ImageWriter::connect()
{
	for (size_t i = 0; i < kQcow2WriterConnections; i++) {
		auto &c = connections_.emplace_back(std::make_unique<Connection>());
		c->nbd = nbd_create();
		if (!c->nbd)
			return qcow2WriterFail("libnbd");
		if (nbd_connect_unix(c->nbd, socket_.c_str()) != 0)
			return qcow2WriterFail("connect to qemu-nbd");
	}
	return {};
}

Qcow2ImageWriter::~Qcow2ImageWriter()
{
	for (auto &c : connections_)
		if (c->nbd)
			nbd_close(c->nbd);
	if (server_ && !server_->reaped())
		server_->stop(std::chrono::seconds(5));
}

Result<void> Qcow2ImageWriter::write(std::span<const uint8_t> data, uint64_t offset)
{
	// A free connection if there is one, else the next in turn.
	const size_t first = next_++, n = connections_.size();
	Connection *c = nullptr;
	std::unique_lock<std::mutex> lock;
	for (size_t i = 0; i < n && !lock; i++) {
		c = connections_[(first + i) % n].get();
		lock = std::unique_lock(c->mutex, std::try_to_lock);
	}
	if (!lock) {
		c = connections_[first % n].get();
		lock = std::unique_lock(c->mutex);
	}
	if (!c->nbd)
		return fail(errc::kInternal, "write to a finished " + what_ + " image");
	if (nbd_pwrite(c->nbd, data.data(), data.size(), offset, 0) != 0)
		return qcow2WriterFail("write into the " + what_ + " image at offset " + std::to_string(offset));
	return {};
}

Result<void> Qcow2ImageWriter::finish()
{
	// Each connection flushes what it wrote: qemu-nbd need not promise
	// that one flush covers the others' writes.
	for (auto &c : connections_) {
		std::lock_guard lock(c->mutex);
		if (nbd_flush(c->nbd, 0) != 0)
			return qcow2WriterFail("flush the " + what_ + " image");
		(void)nbd_shutdown(c->nbd, 0);
		nbd_close(c->nbd);
		c->nbd = nullptr;
	}
	// SIGTERM: qemu-nbd closes the image cleanly (qcow2 metadata and all)
	// and exits 0.
	server_->kill(SIGTERM);
	auto status = server_->waitFor(std::chrono::seconds(60));
	if (!status)
		return fail(errc::kIo, "qemu-nbd did not close the " + what_ + " image within 60 s");
	if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0)
		return fail(errc::kIo, "qemu-nbd did not close the " + what_ + " image cleanly: " + qemuNbdSaid(*server_));
	return {};
}

} // namespace virtsnap::engine
