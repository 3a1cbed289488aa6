#include "storage_daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "qmp/qmp_client.h"

extern char **environ;

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

bool exited(pid_t pid, std::chrono::milliseconds within)
{
	auto deadline = std::chrono::steady_clock::now() + within;
	do {
		int status;
		pid_t r = ::waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return true;
		std::this_thread::sleep_for(20ms);
	} while (std::chrono::steady_clock::now() < deadline);
	return false;
}

std::string tail(const fs::path &log)
{
	std::ifstream in(log);
	std::stringstream ss;
	ss << in.rdbuf();
	std::string s = ss.str();
	while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
		s.pop_back();
	auto pos = s.rfind('\n');
	return pos == std::string::npos ? s : s.substr(pos + 1);
}

} // namespace

Result<std::unique_ptr<StorageDaemon>> StorageDaemon::start(const std::vector<StorageDaemonDisk> &disks,
							     const fs::path &dir)
{
	std::string socket = (dir / "qsd.qmp").string();
	fs::path log = dir / "qsd.log";
	std::vector<std::string> argv = {"qemu-storage-daemon"};
	for (const StorageDaemonDisk &d : disks) {
		argv.push_back("--blockdev");
		argv.push_back("driver=file,node-name=file-" + d.node + ",filename=" + escapeCommas(d.file));
		argv.push_back("--blockdev");
		argv.push_back("driver=" + d.format + ",node-name=" + d.node + ",file=file-" + d.node);
	}
	argv.push_back("--chardev");
	argv.push_back("socket,id=monitor,server=on,wait=off,path=" + escapeCommas(socket));
	argv.push_back("--monitor");
	argv.push_back("chardev=monitor");

	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&actions, 1, 2);
	std::vector<char *> args;
	for (const std::string &a : argv)
		args.push_back(const_cast<char *>(a.c_str()));
	args.push_back(nullptr);
	pid_t pid;
	int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
	posix_spawn_file_actions_destroy(&actions);
	if (rc != 0)
		return fail(errc::kHypervisor, "cannot run qemu-storage-daemon: " + std::string(std::strerror(rc)));
	std::unique_ptr<StorageDaemon> daemon(new StorageDaemon(pid, socket));

	auto deadline = std::chrono::steady_clock::now() + 10s;
	while (std::chrono::steady_clock::now() < deadline) {
		int status;
		if (::waitpid(pid, &status, WNOHANG) == pid) {
			daemon->pid_ = -1;
			return fail(errc::kHypervisor, "qemu-storage-daemon could not open the images: " + tail(log));
		}
		if (fs::exists(socket))
			return daemon;
		std::this_thread::sleep_for(10ms);
	}
	return fail(errc::kHypervisor, "qemu-storage-daemon did not open its monitor within 10 s");
}

StorageDaemon::~StorageDaemon()
{
	if (pid_ <= 0)
		return;
	if (auto qmp = qmp::QmpClient::connect(qmpSocket_, 5000ms))
		(void)(*qmp)->execute("quit"); // SIGKILL below if it did not take
	if (!exited(pid_, 30s)) {
		::kill(pid_, SIGKILL);
		exited(pid_, 5s);
	}
	::unlink(qmpSocket_.c_str());
}

} // namespace virtsnap::hypervisor
