// A real qemu-system-x86_64 (TCG, no guest OS unless a kernel is given) for
// tests, with its monitors, sockets and logs in a private temporary
// directory that goes away with the instance.
//
//   REQUIRE_QEMU();
//   TempDir tmp;
//   ASSERT_TRUE(createImage(tmp.file("vda.qcow2"), "qcow2", "64M"));
//   std::string error;
//   auto vm = QemuInstance::start({.disks = {{.path = tmp.file("vda.qcow2"), .id = "vda"}}}, &error);
//   ASSERT_TRUE(vm) << error;
//   auto client = qmp::QmpClient::connect(vm->qmpSocket());   // the code under test's monitor
//   ASSERT_TRUE(vm->qemuIo("vda", "write -P 0xab 0 64k"));     // guest-like writes
//
// Each disk DiskSpec{path, format, id} becomes
//   -blockdev driver=file,filename=PATH,node-name=file-ID
//   -blockdev driver=FORMAT,file=file-ID,node-name=fmt-ID
//   -device virtio-blk-pci,drive=fmt-ID,id=ID,share-rw=on[,bootindex=N]
// so the device's QOM path is /machine/peripheral/ID and its format node
// is fmt-ID. With DiskSpec::blkdebug a blkdebug node, debug-ID, sits
// between the two. The root PCI bus has 32 slots: disks past the first
// kRootBusDisks go on pci-bridges, so an instance can have dozens.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "qmp/qmp_client.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {

struct DiskSpec {
	std::string path;
	std::string format = "qcow2"; // any -blockdev format driver: "qcow2", "raw"
	std::string id;               // qdev id, e.g. "vda"; defaults to vda, vdb, ... by position
	int bootIndex = -1;           // -1: no bootindex property
	// Options of a blkdebug node between the file and the format node, to
	// inject I/O errors ("inject-error.0.event=read_aio,..."; see QEMU's
	// docs/devel/blkdebug.rst); empty: no such node.
	std::string blkdebug = "";
	// Appended to the format node's options ("encrypt.key-secret=sec0"
	// for a LUKS qcow2, with a QemuOptions::objects secret of that id).
	std::string formatOptions = "";
};

struct QemuOptions {
	std::vector<DiskSpec> disks;
	std::string name = "vs-test";
	std::string uuid;  // -uuid when not empty
	int memoryMb = 128;
	// QMP sockets nobody connects to, for the code under test: qmpSocket(0..n-1).
	int freeMonitors = 1;
	// Adds a virtio-serial port named org.qemu.guest_agent.0 whose host
	// side is a unix socket (server) at guestAgentSocket().
	bool guestAgent = false;
	// Direct kernel boot when `kernel` is set; the guest's ttyS0 goes to
	// serialLogPath() in any case.
	std::string kernel;
	std::string initrd;
	std::string append;
	// -object arguments ("secret,id=sec0,file=PATH,format=raw"), given
	// before the disks that refer to them.
	std::vector<std::string> objects;
	// Appended last, verbatim except that "@DIR@" becomes dir(), so extra
	// sockets and files can live in the private directory.
	std::vector<std::string> extraArgs;
};

class QemuInstance
{
public:
	using Duration = std::chrono::milliseconds;

	// Disks on the root PCI bus (32 slots, some taken by the machine).
	static constexpr size_t kRootBusDisks = 24;

	// Starts QEMU, waits (up to 10 s) for its monitors and connects the
	// control monitor. nullptr with a one-line reason plus QEMU's stderr
	// in `error` on failure. QEMU gets SIGKILL if the calling thread dies,
	// so a crashed test leaves no QEMU behind: start it from the thread
	// that outlives it (the test's own).
	static std::unique_ptr<QemuInstance> start(const QemuOptions &options, std::string *error);

	// quit via the control monitor, SIGKILL after 5 s, reap, remove dir().
	~QemuInstance();

	QemuInstance(const QemuInstance &) = delete;
	QemuInstance &operator=(const QemuInstance &) = delete;

	// A monitor socket nobody is connected to (QEMU serves one client per
	// monitor at a time).
	const std::string &qmpSocket(size_t index = 0) const { return freeSockets_.at(index); }

	// The fixture's own monitor connection, for test set-up and checks.
	qmp::QmpClient &control() { return *control_; }

	// human-monitor-command on the control monitor: the text HMP printed.
	// HMP reports most of its errors in that text, not as a QMP error.
	qmp::Result<std::string> hmp(const std::string &commandLine);

	// Runs a qemu-io command ("write -P 0xab 0 64k", "read -P 0xab 0 64k")
	// against disk `diskId` through the guest device's own BlockBackend
	// (qemu-io -d /machine/peripheral/ID/virtio-backend), which keeps
	// working while a backup job runs on the disk. Returns false when the
	// output reports a failure (failed I/O, pattern mismatch, permission
	// conflict, unknown device). `output` gets qemu-io's text, which QEMU
	// prints on its stdout rather than in the HMP reply.
	bool qemuIo(const std::string &diskId, const std::string &command, std::string *output = nullptr);
	// The same against block node `node` (one with no device: an image a
	// test opened with blockdev-add).
	bool qemuIoNode(const std::string &node, const std::string &command, std::string *output = nullptr);

	// The private directory holding sockets and logs (a TempDir, so under
	// $TMPDIR: a unix socket path must stay within 107 bytes).
	const std::string &dir() const { return dir_->path(); }
	// Empty unless QemuOptions::guestAgent.
	const std::string &guestAgentSocket() const { return agentSocket_; }
	std::string serialLogPath() const { return dir_->file("serial.log"); }
	// QEMU's stderr and stdout so far, for failure messages.
	std::string log() const;

	pid_t pid() const { return pid_; }
	// False once QEMU exited (and reaps it).
	bool isRunning();
	// Waits for QEMU to exit by itself (e.g. after a quit sent by the code
	// under test); false if it is still running after `timeout`.
	bool waitExit(Duration timeout);
	// Kills QEMU with `signal` and waits for it, e.g. to simulate a crash.
	void kill(int signal = 9);

private:
	QemuInstance() = default;
	bool hmpQemuIo(const std::string &on, const std::string &command, std::string *output);

	std::unique_ptr<TempDir> dir_; // declared first: removed last, once QEMU is gone
	std::string controlSocket_;
	std::vector<std::string> freeSockets_;
	std::string agentSocket_;
	pid_t pid_ = -1;
	bool exited_ = false;
	std::unique_ptr<qmp::QmpClient> control_;
};

} // namespace virtsnap::test
