#include "tests/support/qemu_instance.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace virtsnap::test {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// QEMU option values are comma-separated; a literal comma is doubled.
std::string escapeCommas(const std::string &value)
{
	std::string out;
	for (char c : value) {
		out += c;
		if (c == ',')
			out += ',';
	}
	return out;
}

std::string replaceAll(std::string text, const std::string &from, const std::string &to)
{
	for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size()))
		text.replace(pos, from.size(), to);
	return text;
}

size_t fileSize(const std::string &path)
{
	struct stat st;
	if (::stat(path.c_str(), &st) < 0)
		return 0;
	return static_cast<size_t>(st.st_size);
}

bool exists(const std::string &path)
{
	struct stat st;
	return ::stat(path.c_str(), &st) == 0;
}

// One line for the reason, then QEMU's own words.
std::string withLog(const std::string &reason, const std::string &log)
{
	if (log.empty())
		return reason;
	return reason + "; QEMU output:\n" + log;
}

bool reportsFailure(const std::string &text)
{
	std::string lower;
	for (char c : text)
		lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
	for (const char *word : {"fail", "error", "conflict", "not found", "cannot", "invalid", "usage:"}) {
		if (lower.find(word) != std::string::npos)
			return true;
	}
	return false;
}

// HMP's string arguments take C-like escapes inside double quotes.
std::string hmpQuote(const std::string &text)
{
	std::string out = "\"";
	for (char c : text) {
		if (c == '"' || c == '\\')
			out += '\\';
		out += c;
	}
	return out + "\"";
}

// Of a pci-bridge's 32 slots; QEMU assigns them.
constexpr size_t kBridgeSlots = 31;

// The -blockdev and -device arguments of the `index`th disk, and the
// pci-bridge it goes on when the root bus is full.
void addDisk(std::vector<std::string> &args, const DiskSpec &disk, size_t index)
{
	std::string id = disk.id.empty() ? "vd" + std::string(1, static_cast<char>('a' + index)) : disk.id;
	args.insert(args.end(), {"-blockdev", "driver=file,filename=" + escapeCommas(disk.path) +
						      ",node-name=file-" + id});
	std::string below = "file-" + id;
	if (!disk.blkdebug.empty()) {
		args.insert(args.end(), {"-blockdev", "driver=blkdebug,image=" + below + ",node-name=debug-" + id +
							      "," + disk.blkdebug});
		below = "debug-" + id;
	}
	args.insert(args.end(), {"-blockdev", "driver=" + disk.format + ",file=" + below + ",node-name=fmt-" + id +
						      (disk.formatOptions.empty() ? "" : "," + disk.formatOptions)});
	std::string device = "virtio-blk-pci,drive=fmt-" + id + ",id=" + id + ",share-rw=on";
	if (disk.bootIndex >= 0)
		device += ",bootindex=" + std::to_string(disk.bootIndex);
	if (index >= QemuInstance::kRootBusDisks) {
		size_t onBridges = index - QemuInstance::kRootBusDisks;
		std::string bridge = "vs-bridge" + std::to_string(onBridges / kBridgeSlots);
		if (onBridges % kBridgeSlots == 0)
			args.insert(args.end(), {"-device", "pci-bridge,id=" + bridge + ",chassis_nr=" +
								    std::to_string(1 + onBridges / kBridgeSlots)});
		device += ",bus=" + bridge;
	}
	args.insert(args.end(), {"-device", device});
}

} // namespace

std::unique_ptr<QemuInstance> QemuInstance::start(const QemuOptions &options, std::string *error)
{
	auto failWith = [&](const std::string &message) -> std::unique_ptr<QemuInstance> {
		if (error)
			*error = message;
		return nullptr;
	};

	std::unique_ptr<QemuInstance> vm(new QemuInstance());
	try {
		vm->dir_ = std::make_unique<TempDir>("vs-qemu");
	} catch (const std::system_error &e) {
		return failWith(e.what());
	}
	const std::string &dir = vm->dir();

	std::vector<std::string> args = {
		"qemu-system-x86_64", "-nodefaults", "-display", "none", "-machine", "pc,accel=tcg",
		"-m", std::to_string(options.memoryMb), "-name", escapeCommas(options.name),
	};
	if (!options.uuid.empty())
		args.insert(args.end(), {"-uuid", options.uuid});

	vm->controlSocket_ = dir + "/control.sock";
	args.insert(args.end(), {"-qmp", "unix:" + escapeCommas(vm->controlSocket_) + ",server=on,wait=off"});
	for (int i = 0; i < options.freeMonitors; i++) {
		std::string socket = dir + "/qmp" + std::to_string(i) + ".sock";
		vm->freeSockets_.push_back(socket);
		args.insert(args.end(), {"-qmp", "unix:" + escapeCommas(socket) + ",server=on,wait=off"});
	}
	args.insert(args.end(), {"-serial", "file:" + escapeCommas(vm->serialLogPath())});
	if (!options.kernel.empty())
		args.insert(args.end(), {"-kernel", options.kernel});
	if (!options.initrd.empty())
		args.insert(args.end(), {"-initrd", options.initrd});
	if (!options.append.empty())
		args.insert(args.end(), {"-append", options.append});

	for (const std::string &object : options.objects)
		args.insert(args.end(), {"-object", object});
	for (size_t i = 0; i < options.disks.size(); i++)
		addDisk(args, options.disks[i], i);

	if (options.guestAgent) {
		vm->agentSocket_ = dir + "/qga.sock";
		args.insert(args.end(), {
			"-device", "virtio-serial-pci,id=vs-serial0",
			"-chardev", "socket,id=vs-qga0,path=" + escapeCommas(vm->agentSocket_) + ",server=on,wait=off",
			"-device", "virtserialport,bus=vs-serial0.0,chardev=vs-qga0,name=org.qemu.guest_agent.0",
		});
	}
	for (const auto &arg : options.extraArgs)
		args.push_back(replaceAll(arg, "@DIR@", dir));

	int outFd = ::open((dir + "/qemu.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int errFd = ::open((dir + "/qemu.err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (outFd < 0 || errFd < 0) {
		int err = errno;
		for (int fd : {outFd, errFd})
			if (fd >= 0)
				::close(fd);
		return failWith("cannot open QEMU's log files in " + dir + ": " + std::strerror(err));
	}
	// A test that crashes or is killed by the harness must not leave QEMU
	// behind: spawn() asks for SIGKILL.
	pid_t pid = spawn(args, outFd, errFd);
	int spawnErrno = errno;
	::close(outFd);
	::close(errFd);
	if (pid < 0)
		return failWith(std::string("fork: ") + std::strerror(spawnErrno));
	vm->pid_ = pid;

	std::vector<std::string> sockets = vm->freeSockets_;
	sockets.push_back(vm->controlSocket_);
	if (!vm->agentSocket_.empty())
		sockets.push_back(vm->agentSocket_);
	auto deadline = Clock::now() + 10s;
	for (;;) {
		if (!vm->isRunning())
			return failWith(withLog("QEMU exited during start-up", vm->log()));
		bool all = true;
		for (const auto &socket : sockets)
			all = all && exists(socket);
		if (all)
			break;
		if (Clock::now() >= deadline)
			return failWith(withLog("QEMU's sockets did not appear within 10 s in " + dir, vm->log()));
		std::this_thread::sleep_for(10ms);
	}

	// The socket file exists from bind() on; listen() follows at once.
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
		auto control = qmp::QmpClient::connect(vm->controlSocket_, std::max(left, 1000ms));
		if (control) {
			vm->control_ = std::move(*control);
			break;
		}
		if (control.error().errorClass != "ConnectionFailed" || Clock::now() >= deadline)
			return failWith(withLog("cannot connect to QEMU's control monitor: " +
							control.error().toString(),
						vm->log()));
		std::this_thread::sleep_for(10ms);
	}
	return vm;
}

QemuInstance::~QemuInstance()
{
	if (pid_ > 0 && !exited_) {
		if (control_)
			(void)control_->execute("quit", virtsnap::Json(), 2000ms);
		if (!waitExit(5000ms))
			kill(SIGKILL);
	}
	control_.reset();
}

qmp::Result<std::string> QemuInstance::hmp(const std::string &commandLine)
{
	auto reply = control_->execute("human-monitor-command",
				       virtsnap::Json::object().set("command-line", virtsnap::Json::string(commandLine)));
	if (!reply)
		return std::unexpected(reply.error());
	return reply->asString();
}

bool QemuInstance::qemuIo(const std::string &diskId, const std::string &command, std::string *output)
{
	return hmpQemuIo("-d /machine/peripheral/" + diskId + "/virtio-backend", command, output);
}

bool QemuInstance::qemuIoNode(const std::string &node, const std::string &command, std::string *output)
{
	return hmpQemuIo(node, command, output);
}

bool QemuInstance::hmpQemuIo(const std::string &on, const std::string &command, std::string *output)
{
	const std::string stdoutPath = dir_->file("qemu.out");
	size_t before = fileSize(stdoutPath);
	auto reply = hmp("qemu-io " + on + " " + hmpQuote(command));
	if (!reply) {
		if (output)
			*output = reply.error().toString();
		return false;
	}
	// HMP's own errors (unknown device...) come back in the reply; what
	// qemu-io prints goes to QEMU's stdout, flushed before the reply is
	// sent. Commands like "flush" print nothing, hence the short grace.
	std::string printed = readFile(stdoutPath, before);
	for (auto until = Clock::now() + 200ms; printed.empty() && reply->empty() && Clock::now() < until;) {
		std::this_thread::sleep_for(10ms);
		printed = readFile(stdoutPath, before);
	}
	std::string text = *reply + printed;
	if (output)
		*output = text;
	return !reportsFailure(text);
}

std::string QemuInstance::log() const
{
	std::string err = readFile(dir_->file("qemu.err"));
	std::string out = readFile(dir_->file("qemu.out"));
	if (out.empty())
		return err;
	return err + (err.empty() ? "" : "\n") + "stdout:\n" + out;
}

bool QemuInstance::isRunning()
{
	if (pid_ <= 0 || exited_)
		return false;
	int status;
	pid_t r = ::waitpid(pid_, &status, WNOHANG);
	if (r == pid_ || (r < 0 && errno == ECHILD))
		exited_ = true;
	return !exited_;
}

bool QemuInstance::waitExit(Duration timeout)
{
	auto deadline = Clock::now() + timeout;
	while (isRunning()) {
		if (Clock::now() >= deadline)
			return false;
		std::this_thread::sleep_for(10ms);
	}
	return true;
}

void QemuInstance::kill(int signal)
{
	if (!isRunning())
		return;
	::kill(pid_, signal);
	if (signal != SIGKILL && waitExit(10000ms))
		return;
	if (signal != SIGKILL)
		::kill(pid_, SIGKILL);
	int status;
	while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
	}
	exited_ = true;
}

} // namespace virtsnap::test
