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

Result<std::unique_ptr<Qcow2ImageWriter>> Qcow2ImageWriter::create(int imageFd, uint64_t size, const LuksSettings *luks,
								   const std::string &target,
								   std::chrono::milliseconds answerTimeout)
{
	std::unique_ptr<Qcow2ImageWriter> w(new Qcow2ImageWriter());
	w->target_ = target;
	w->answerTimeout_ = answerTimeout;
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
	options.dieWithParent = true; // an image half written serves no one
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
	NbdPeer peer{"qemu-nbd's export of the new " + what_ + " image " + target_, "qemu-nbd", errc::kIo,
		     answerTimeout_};
	for (size_t i = 0; i < kQcow2WriterConnections; i++) {
		auto &c = connections_.emplace_back(std::make_unique<Connection>());
		VS_ASSIGN(c->nbd, NbdConnection::create(peer));
		VS_TRY(c->nbd->connectUnix(socket_));
	}
	return {};
}

Qcow2ImageWriter::~Qcow2ImageWriter()
{
	// qemu-nbd first: a connection to a stopped one would wait for its
	// clean disconnect, one to a dead one closes at once.
	if (server_ && !server_->reaped())
		server_->stop(std::chrono::seconds(5));
	connections_.clear();
}

Result<void> Qcow2ImageWriter::complete(NbdConnection &c, int64_t cookie, const std::string &what)
{
	if (cookie < 0)
		return c.failed(what);
	int done = 0;
	auto waited = c.waitFor([&] { return (done = nbd_aio_command_completed(c.handle(), uint64_t(cookie))) != 0; });
	if (!waited) {
		// Its request may still come back: nothing may read our buffer then.
		c.abandon();
		return waited;
	}
	if (done < 0)
		return c.failed(what);
	return {};
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
	// One that missed its timeout before fails the same way at once.
	if (!c->nbd->handle())
		return std::unexpected(c->nbd->noAnswer());
	int64_t cookie = nbd_aio_pwrite(c->nbd->handle(), data.data(), data.size(), offset, nbd_completion_callback{}, 0);
	return complete(*c->nbd, cookie, "write into the " + what_ + " image at offset " + std::to_string(offset));
}

Result<void> Qcow2ImageWriter::finish()
{
	// Each connection flushes what it wrote: qemu-nbd need not promise
	// that one flush covers the others' writes.
	for (auto &c : connections_) {
		std::lock_guard lock(c->mutex);
		if (!c->nbd->handle())
			return std::unexpected(c->nbd->noAnswer());
		VS_TRY(complete(*c->nbd, nbd_aio_flush(c->nbd->handle(), nbd_completion_callback{}, 0),
				"flush the " + what_ + " image"));
		c->nbd.reset(); // disconnects
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
