#include "storage_daemon.h"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/secret_memfd.h"
#include "core/socket_probe.h"
#include "qmp/qmp_client.h"

namespace virtsnap::hypervisor {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// QEMU's option syntax doubles commas inside values.
std::string escapeCommas(const std::string &s)
{
	std::string out;
	for (char c : s) {
		out += c;
		if (c == ',')
			out += ',';
	}
	return out;
}

std::string tail(const fs::path &log)
{
	std::ifstream in(log);
	std::stringstream ss;
	ss << in.rdbuf();
	return lastLine(ss.str());
}

} // namespace

Result<std::unique_ptr<StorageDaemon>> StorageDaemon::start(const std::vector<StorageDaemonDisk> &disks,
							     const fs::path &dir)
{
	std::string socket = (dir / "qsd.qmp").string();
	fs::path log = dir / "qsd.log";
	std::vector<std::string> argv = {"qemu-storage-daemon"};
	// Held until it has opened the images, which reads them.
	std::vector<UniqueFd> secrets;
	SpawnOptions options;
	for (const StorageDaemonDisk &d : disks) {
		std::string format = "driver=" + d.format;
		if (!d.passphrase.empty()) {
			VS_ASSIGN(UniqueFd fd, secretMemfd(d.passphrase));
			std::string id = "secret-" + d.node;
			argv.insert(argv.end(), {"--object", secretObject(id, fd.get())});
			options.keepFds.push_back(fd.get());
			secrets.push_back(std::move(fd));
			format = d.format == "qcow2" ? "driver=qcow2,encrypt.format=luks,encrypt.key-secret=" + id
						     : "driver=luks,key-secret=" + id;
		}
		argv.push_back("--blockdev");
		argv.push_back("driver=file,node-name=file-" + d.node + ",filename=" + escapeCommas(d.file));
		argv.push_back("--blockdev");
		argv.push_back(format + ",node-name=" + d.node + ",file=file-" + d.node);
	}
	argv.push_back("--chardev");
	argv.push_back("socket,id=monitor,server=on,wait=off,path=" + escapeCommas(socket));
	argv.push_back("--monitor");
	argv.push_back("chardev=monitor");

	options.out = Stdio::toFile(log);
	options.err = Stdio::sameAsStdout();
	options.errorCode = errc::kHypervisor;
	VS_ASSIGN(Process process, Process::spawn(argv, options));
	std::unique_ptr<StorageDaemon> daemon(new StorageDaemon(std::move(process), socket));

	auto deadline = std::chrono::steady_clock::now() + 10s;
	while (std::chrono::steady_clock::now() < deadline) {
		if (daemon->process_.waitFor(0ms))
			return fail(errc::kHypervisor, "qemu-storage-daemon could not open the images: " + tail(log));
		if (socketAnswers(socket))
			return daemon;
		std::this_thread::sleep_for(10ms);
	}
	return fail(errc::kHypervisor, "qemu-storage-daemon did not open its monitor within 10 s");
}

StorageDaemon::~StorageDaemon()
{
	if (process_.reaped())
		return; // it exited while starting
	if (auto qmp = qmp::QmpClient::connect(qmpSocket_, 5000ms))
		(void)(*qmp)->execute("quit"); // SIGKILL below if it did not take
	if (!process_.waitFor(30s))
		(void)process_.stop(5s);
	::unlink(qmpSocket_.c_str());
}

} // namespace virtsnap::hypervisor
