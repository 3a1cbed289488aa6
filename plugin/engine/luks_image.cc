#include "luks_image.h"

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

constexpr const char *kLuksSecretId = "vssec0";
// Opening the image derives its key first: iter-time, many times over on
// a loaded host.
constexpr std::chrono::seconds kLuksStartLimit{120};

std::unexpected<Error> luksFail(const std::string &what)
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

Result<std::unique_ptr<LuksImageWriter>> LuksImageWriter::create(int imageFd, uint64_t size, const LuksSettings &luks)
{
	if (luks.passphrase.empty())
		return fail(errc::kInvalidParameterValue, "the LUKS passphrase is empty");
	std::unique_ptr<LuksImageWriter> w(new LuksImageWriter());
	VS_ASSIGN(w->secret_, secretMemfd(luks.passphrase));
	const std::string object = secretObject(kLuksSecretId, w->secret_.get());
	const std::string image = heldOpenPath(imageFd);
	auto made = createLuksQcow2({image, size, w->secret_.get(), luks.iterTime, "", {imageFd}}, errc::kIo);
	if (!made)
		return fail(made.error().code, "cannot create the LUKS image: " + made.error().message);

	VS_ASSIGN(w->work_, WorkDir::create());
	const std::string socket = (w->work_->path() / "luks.sock").string();
	SpawnOptions options;
	options.err = Stdio::pipe();
	options.keepFds = {imageFd, w->secret_.get()};
	VS_ASSIGN(Process server,
		  Process::spawn({"qemu-nbd", "--persistent", "--object", object, "--image-opts",
				  std::string("driver=qcow2,file.driver=file,file.filename=") + image +
					  ",encrypt.key-secret=" + kLuksSecretId,
				  "--socket", socket},
				 options));
	w->server_.emplace(std::move(server));
	auto deadline = std::chrono::steady_clock::now() + kLuksStartLimit;
	while (!socketAnswers(socket)) {
		if (w->server_->hasExited())
			return fail(errc::kIo, "qemu-nbd could not serve the new LUKS image: " + qemuNbdSaid(*w->server_));
		if (std::chrono::steady_clock::now() > deadline)
			return fail(errc::kIo, "qemu-nbd did not serve the new LUKS image within " +
						       std::to_string(kLuksStartLimit.count()) + " s");
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
	w->nbd_ = nbd_create();
	if (!w->nbd_)
		return luksFail("libnbd");
	if (nbd_connect_unix(w->nbd_, socket.c_str()) != 0)
		return luksFail("connect to qemu-nbd");
	return w;
}

LuksImageWriter::~LuksImageWriter()
{
	if (nbd_)
		nbd_close(nbd_);
	if (server_ && !server_->reaped())
		server_->stop(std::chrono::seconds(5));
}

Result<void> LuksImageWriter::write(std::span<const uint8_t> data, uint64_t offset)
{
	// libnbd's handle has its own lock; ours keeps finish() from closing
	// it under a writer.
	std::lock_guard lock(mutex_);
	if (!nbd_)
		return fail(errc::kInternal, "write to a finished LUKS image");
	if (nbd_pwrite(nbd_, data.data(), data.size(), offset, 0) != 0)
		return luksFail("write into the LUKS image at offset " + std::to_string(offset));
	return {};
}

Result<void> LuksImageWriter::finish()
{
	std::lock_guard lock(mutex_);
	if (nbd_flush(nbd_, 0) != 0)
		return luksFail("flush the LUKS image");
	(void)nbd_shutdown(nbd_, 0);
	nbd_close(nbd_);
	nbd_ = nullptr;
	// SIGTERM: qemu-nbd closes the image cleanly (qcow2 metadata and all)
	// and exits 0.
	server_->kill(SIGTERM);
	auto status = server_->waitFor(std::chrono::seconds(60));
	if (!status)
		return fail(errc::kIo, "qemu-nbd did not close the LUKS image within 60 s");
	if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0)
		return fail(errc::kIo, "qemu-nbd did not close the LUKS image cleanly: " + qemuNbdSaid(*server_));
	return {};
}

} // namespace virtsnap::engine
