// libvirt domains against a real libvirtd (started here when none runs),
// domain type 'qemu' (TCG), booting the test guest of tests/guest with its
// qemu-guest-agent on libvirt's own channel.
//
// Disk vdd carries no filesystem: the guest never writes it, and the test
// writes patterns into it through libvirt's HMP passthrough while mirroring
// every write into a raw reference file with qemu-io, so each restore is
// compared byte for byte with a reference made without virtsnap.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sstream>
#include <thread>

#include "cli_fixture.h"
#include "scratch_checks.h"
#include "hypervisor/libvirt_driver.h"
#include "test_guest.h"
#include "tests/support/nbdkit_plugin.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;
using Clock = std::chrono::steady_clock;

const std::string kUri = "qemu:///system";
constexpr const char *kLibvirtLuksMarker = "virtsnap-libvirt-luks-marker-91f3";

int virsh(std::vector<std::string> args, std::string *out = nullptr)
{
	args.insert(args.begin(), {"virsh", "-q", "-c", kUri});
	std::string sink;
	return runCommand(args, out ? out : &sink);
}

// A libvirtd for the tests: the machine's when it answers, else one
// started here (CI machines have the packages but no init system).
bool ensureLibvirtd(std::string *error)
{
	// libvirt 9.0 probes QEMU as root but checks /dev/kvm as its qemu
	// user: when the two disagree (a /dev/kvm of mode 0600, as on these
	// machines) it finds its capability cache stale on every lookup and
	// re-probes, and each define takes a minute. The domains here are TCG
	// all the same.
	struct stat kvm {};
	if (::stat("/dev/kvm", &kvm) == 0 && (kvm.st_mode & 0006) != 0006)
		::chmod("/dev/kvm", 0666);
	if (virsh({"version"}) == 0)
		return true;
	std::string out;
	runCommand({"virtlogd", "-d"}, &out);
	runCommand({"libvirtd", "-d"}, &out);
	for (int i = 0; i < 100; i++) {
		if (virsh({"version"}) == 0)
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
	*error = "libvirtd did not answer at " + kUri + ": " + out;
	return false;
}

// libvirt scans its hook directory at start only: a new hook needs a
// restart. Running domains survive it (libvirtd reconnects).
void restartLibvirtd()
{
	runCommand({"pkill", "-x", "libvirtd"});
	for (int i = 0; i < 100 && runCommand({"pgrep", "-x", "libvirtd"}) == 0; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	std::string error;
	ensureLibvirtd(&error);
}

class LibvirtTest : public CliTest
{
protected:
	void SetUp() override
	{
		REQUIRE_QEMU();
		REQUIRE_TOOL("virsh");
		REQUIRE_TOOL("libvirtd");
		REQUIRE_TOOL("qemu-storage-daemon");
		REQUIRE_TOOL("qemu-io");
		std::string error;
		ASSERT_TRUE(ensureLibvirtd(&error)) << error;
		cache_ = guestCache(&error);
		ASSERT_TRUE(error.empty()) << error;
		// QEMU runs as libvirt's user: the domain's files sit where it
		// may read them.
		domainDir_ = std::make_unique<TempDir>("vs-libvirt", "/var/tmp");
		dir_ = domainDir_->path();
		::chmod(dir_.c_str(), 0755);
		name_ = "vs-test-" + std::to_string(::getpid()) + "-" + fs::path(dir_).filename().string().substr(11);
		ASSERT_EQ(cli({"init"}).status, 0);
	}

	void TearDown() override
	{
		if (!name_.empty()) {
			virsh({"destroy", name_});
			virsh({"undefine", name_, "--checkpoints-metadata", "--managed-save"});
		}
		if (!secretUuid_.empty())
			virsh({"secret-undefine", secretUuid_});
		domainDir_.reset();
	}

	std::string file(const std::string &name) const { return dir_ + "/" + name; }

	// Defines the domain: vda..vdc ext4, vdd blank but for a pattern at
	// its start, mirrored in ref.raw. `extraXml` goes inside <domain>,
	// `extraDisks` inside <devices>.
	void define(const std::string &extraXml = "", const std::string &extraDisks = "")
	{
		std::string out;
		for (const char *d : {"vda", "vdb", "vdc"})
			ASSERT_EQ(runCommand({sourceDir() + "/tests/guest/make-ext4-disk", file(std::string(d) + ".qcow2"),
					      "64M", "qcow2"},
					     &out),
				  0)
				<< out;
		ASSERT_EQ(runCommand({"qemu-img", "create", "-q", "-f", "qcow2", file("vdd.qcow2"), "64M"}, &out), 0);
		ASSERT_EQ(runCommand({"qemu-img", "create", "-q", "-f", "raw", file("ref.raw"), "64M"}, &out), 0);
		for (const std::string &f : {file("vdd.qcow2"), file("ref.raw")})
			ASSERT_EQ(runCommand({"qemu-io", "-f", f.ends_with(".raw") ? "raw" : "qcow2", "-c",
					      "write -P 0x5a 0 8M", f},
					     &out),
				  0)
				<< out;
		fs::copy_file(cache_ + "/vmlinux", file("vmlinux"));
		fs::copy_file(cache_ + "/initrd.img", file("initrd.img"));
		std::string disks = extraDisks;
		for (const char *d : {"vda", "vdb", "vdc", "vdd"})
			disks += "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='" +
				 file(std::string(d) + ".qcow2") + "'/><target dev='" + d + "' bus='virtio'/></disk>";
		std::string xml = "<domain type='qemu'><name>" + name_ +
				  "</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
				  "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>" +
				  file("vmlinux") + "</kernel><initrd>" + file("initrd.img") +
				  "</initrd><cmdline>console=ttyS0 panic=-1 quiet virtsnap.workload=idle</cmdline></os>"
				  // ACPI: the PCI bus takes hotplugged disks.
				  "<features><acpi/></features>"
				  "<on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>" +
				  extraXml + "<devices>" + disks + "<serial type='file'><source path='" + file("serial.log") +
				  "'/><target port='0'/></serial>"
				  "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
				  "</devices></domain>";
		std::ofstream(file("domain.xml")) << xml;
		ASSERT_EQ(virsh({"define", file("domain.xml")}, &out), 0) << out;
	}

	void start()
	{
		std::string out;
		// The guest's readiness line of an earlier boot must not count.
		ASSERT_TRUE(::truncate(file("serial.log").c_str(), 0) == 0 || errno == ENOENT) << std::strerror(errno);
		ASSERT_EQ(virsh({"start", name_}, &out), 0) << out;
		auto deadline = Clock::now() + std::chrono::seconds(180);
		while (readFile(file("serial.log")).find("VIRTSNAP-GUEST-READY") == std::string::npos) {
			ASSERT_LT(Clock::now(), deadline) << "guest did not come up:\n" << readFile(file("serial.log"));
			std::this_thread::sleep_for(std::chrono::milliseconds(200));
		}
	}

	void boot(const std::string &extraXml = "")
	{
		ASSERT_NO_FATAL_FAILURE(define(extraXml));
		ASSERT_NO_FATAL_FAILURE(start());
	}

	// A write into the running domain's vdd, through libvirt, and the same
	// write into the reference.
	void writeBoth(const std::string &pattern, const std::string &offset, const std::string &length)
	{
		std::string cmd = "write -P " + pattern + " " + offset + " " + length;
		std::string out;
		ASSERT_EQ(virsh({"qemu-monitor-command", name_, "--hmp",
				 "qemu-io -d /machine/peripheral/virtio-disk3/virtio-backend \"" + cmd + "\""},
				&out),
			  0)
			<< out;
		ASSERT_EQ(out.find("rror"), std::string::npos) << out;
		ASSERT_EQ(runCommand({"qemu-io", "-f", "raw", "-c", cmd, file("ref.raw")}, &out), 0) << out;
	}

	// Through the daemon at `socket`, or in this process when "".
	CliResult snapshotAll(std::vector<std::string> extra = {}, const std::string &socket = "")
	{
		std::vector<std::string> args{"create-snapshots", "--domain", name_, "--connect", kUri, "--wait"};
		args.insert(args.end(), extra.begin(), extra.end());
		return cli(args, socket);
	}

	// qemu-img compare's exit status (0: identical) of a restore against
	// `reference`.
	int compareRestore(const std::string &snapshotId, const std::string &reference, const std::string &format,
			   std::string *out)
	{
		std::string target = tmp_.file(snapshotId + ".raw");
		CliResult r = cli({"create-volume", "--snapshot-id", snapshotId, "--target", target, "--format", "raw"});
		EXPECT_EQ(r.status, 0) << r.err;
		return runCommand({"qemu-img", "compare", "-f", "raw", "-F", format, target, reference}, out);
	}

	std::vector<std::string> checkpoints()
	{
		std::string out;
		virsh({"checkpoint-list", name_, "--name"}, &out);
		return lines(out);
	}

	std::string qemuPid()
	{
		return readFile("/run/libvirt/qemu/" + name_ + ".pid");
	}

	// guest-fsfreeze-status through libvirt: "thawed", "frozen", or what
	// went wrong.
	std::string freezeStatus()
	{
		std::string out;
		virsh({"qemu-agent-command", name_, R"({"execute":"guest-fsfreeze-status"})"}, &out);
		auto reply = Json::parse(out);
		return reply ? reply->getString("return").value_or(out) : out;
	}

	// `script` run by the guest's sh through its agent (guest-exec); waited
	// for unless `background`.
	void guestShell(const std::string &script, bool background = false)
	{
		Json exec = Json::object();
		exec.set("execute", Json::string("guest-exec"));
		exec.set("arguments", guestExecArguments(script));
		std::string out;
		ASSERT_EQ(virsh({"qemu-agent-command", name_, exec.dump()}, &out), 0) << out;
		auto pid = Json::parse(out).value_or(Json()).get("return").getInt("pid");
		ASSERT_TRUE(pid) << out;
		for (auto deadline = Clock::now() + std::chrono::seconds(30); !background;) {
			virsh({"qemu-agent-command", name_,
			       R"({"execute":"guest-exec-status","arguments":{"pid":)" + std::to_string(*pid) + "}}"},
			      &out);
			if (Json::parse(out).value_or(Json()).get("return").getBool("exited").value_or(false))
				break;
			ASSERT_LT(Clock::now(), deadline) << script << ": " << out;
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		}
	}

	// vde: a 16 MiB LUKS qcow2 whose passphrase is a libvirt secret (not
	// private, so virtsnap reads it), holding kLibvirtLuksMarker at 1 MiB,
	// mirrored in ref-vde.raw. Returns its <disk> for define().
	std::string luksDisk()
	{
		std::string out;
		std::ofstream(file("vde.pass")) << "libvirt luks test passphrase";
		::chmod(file("vde.pass").c_str(), 0600);
		const std::string object = "secret,id=sec0,file=" + file("vde.pass") + ",format=raw";
		// qemu-img 7.2 fails its key derivation's timing at random
		// ("Unable to get accurate CPU usage"): retried, as virtsnap does.
		int status = 1;
		for (int attempt = 0; attempt < 5 && status != 0; attempt++)
			status = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "--object", object, "-o",
					     "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", file("vde.qcow2"),
					     "16M"},
					    &out);
		EXPECT_EQ(status, 0) << out;
		std::string marker;
		while (marker.size() < 64 * 1024)
			marker += kLibvirtLuksMarker;
		marker.resize(64 * 1024);
		std::ofstream(file("marker.bin"), std::ios::binary) << marker;
		EXPECT_EQ(runCommand({"qemu-io", "--object", object, "--image-opts", "-c", "write -s " + file("marker.bin") + " 1M 64k",
				      "driver=qcow2,file.filename=" + file("vde.qcow2") + ",encrypt.key-secret=sec0"},
				     &out),
			  0)
			<< out;
		EXPECT_EQ(runCommand({"qemu-img", "create", "-q", "-f", "raw", file("ref-vde.raw"), "16M"}, &out), 0) << out;
		EXPECT_EQ(runCommand({"qemu-io", "-f", "raw", "-c", "write -s " + file("marker.bin") + " 1M 64k",
				      file("ref-vde.raw")},
				     &out),
			  0)
			<< out;
		secretUuid_ = readFile("/proc/sys/kernel/random/uuid").substr(0, 36);
		std::ofstream(file("secret.xml")) << "<secret ephemeral='no' private='no'><uuid>" << secretUuid_
						  << "</uuid><description>" << name_ << " vde</description></secret>";
		EXPECT_EQ(virsh({"secret-define", file("secret.xml")}, &out), 0) << out;
		EXPECT_EQ(virsh({"secret-set-value", secretUuid_, "--file", file("vde.pass"), "--plain"}, &out), 0) << out;
		return "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='" + file("vde.qcow2") +
		       "'><encryption format='luks'><secret type='passphrase' uuid='" + secretUuid_ +
		       "'/></encryption></source><target dev='vde' bus='virtio'/></disk>";
	}

	// The LUKS qcow2 `image`, opened with vde's passphrase, against the raw
	// `reference`: qemu-img compare's status.
	int compareLuks(const std::string &image, const std::string &reference, std::string *out)
	{
		return runCommand({"qemu-img", "compare", "--object",
				   "secret,id=sec0,file=" + file("vde.pass") + ",format=raw", "--image-opts",
				   "driver=qcow2,file.filename=" + image + ",encrypt.key-secret=sec0",
				   "driver=raw,file.filename=" + reference},
				  out);
	}

	std::unique_ptr<TempDir> domainDir_;
	std::string cache_, dir_, name_, secretUuid_;
};

TEST_F(LibvirtTest, FullThenIncrementalThroughLibvirtRestoreByteForByte)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	CliResult first = snapshotAll();
	ASSERT_EQ(first.status, 0) << first.err;
	auto one = byDisk(first.json());
	ASSERT_EQ(one.size(), 4u) << first.out;
	for (auto &[disk, s] : one) {
		EXPECT_EQ(s.getString("CaptureMode"), "full") << disk;
		// The freeze went through libvirt's own agent channel: no
		// --qga-socket was given.
		EXPECT_EQ(s.getString("ConsistencyLevel"), "application") << disk << ": " << first.err;
	}
	std::string out;
	EXPECT_EQ(compareRestore(one["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"), "raw", &out), 0)
		<< out;
	// The checkpoint is named after the set.
	EXPECT_EQ(checkpoints(), std::vector<std::string>{one["vdd"].getString("SnapshotSetId").value_or("")});

	ASSERT_NO_FATAL_FAILURE(writeBoth("0xa1", "1M", "64k"));
	ASSERT_NO_FATAL_FAILURE(writeBoth("0xa2", "40M", "128k"));
	CliResult second = snapshotAll();
	ASSERT_EQ(second.status, 0) << second.err;
	auto two = byDisk(second.json());
	EXPECT_EQ(two["vdd"].getString("CaptureMode"), "incremental");
	EXPECT_EQ(two["vdd"].getInt("BytesRead"), 192 * 1024) << second.out;
	EXPECT_EQ(compareRestore(two["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"), "raw", &out), 0)
		<< out;
	// The first checkpoint went once nothing continued from it.
	EXPECT_EQ(checkpoints(), std::vector<std::string>{two["vdd"].getString("SnapshotSetId").value_or("")});

	// The volume id follows the domain's UUID, not its name.
	std::string renamed = name_ + "-renamed";
	ASSERT_EQ(virsh({"destroy", name_}), 0);
	ASSERT_EQ(virsh({"domrename", name_, renamed}, &out), 0) << out;
	name_ = renamed;
	CliResult offline = snapshotAll();
	ASSERT_EQ(offline.status, 0) << offline.err;
	auto three = byDisk(offline.json());
	EXPECT_EQ(three["vdd"].getString("VolumeId"), one["vdd"].getString("VolumeId"));
	EXPECT_EQ(three["vdd"].getString("CaptureMode"), "incremental") << offline.out;
	// Off, the images are what the snapshot must hold, byte for byte.
	for (const char *d : {"vda", "vdb", "vdc", "vdd"})
		EXPECT_EQ(compareRestore(three[d].getString("SnapshotId").value_or(""), file(std::string(d) + ".qcow2"),
					 "qcow2", &out),
			  0)
			<< d << ": " << out;
}

TEST_F(LibvirtTest, ACheckpointLibvirtLostIsRedefinedAndTheChainContinues)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	CliResult first = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(first.status, 0) << first.err;
	std::string cp = byDisk(first.json())["vdd"].getString("SnapshotSetId").value_or("");
	std::string out;
	ASSERT_EQ(virsh({"checkpoint-delete", name_, cp, "--metadata"}, &out), 0) << out;
	ASSERT_TRUE(checkpoints().empty());

	ASSERT_NO_FATAL_FAILURE(writeBoth("0xb1", "2M", "64k"));
	CliResult second = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(second.status, 0) << second.err;
	EXPECT_NE(second.err.find("redefined checkpoint " + cp), std::string::npos) << second.err;
	auto two = byDisk(second.json());
	EXPECT_EQ(two["vdd"].getString("CaptureMode"), "incremental") << second.out;
	EXPECT_EQ(two["vdd"].getInt("BytesRead"), 64 * 1024);
	EXPECT_EQ(compareRestore(two["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"), "raw", &out), 0)
		<< out;
}

TEST_F(LibvirtTest, ALostBitmapMeansAFullReadAndItsCheckpointGoes)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	CliResult first = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(first.status, 0) << first.err;
	std::string cp = byDisk(first.json())["vdd"].getString("SnapshotSetId").value_or("");
	// QEMU stores the bitmap when it quits; then it is removed behind
	// libvirt's back.
	ASSERT_EQ(virsh({"destroy", name_}), 0);
	std::string out;
	ASSERT_EQ(runCommand({"qemu-img", "bitmap", "--remove", file("vdd.qcow2"), cp}, &out), 0) << out;
	ASSERT_NO_FATAL_FAILURE(start());
	ASSERT_NO_FATAL_FAILURE(writeBoth("0xc1", "3M", "64k"));

	CliResult second = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(second.status, 0) << second.err;
	auto two = byDisk(second.json());
	EXPECT_EQ(two["vdd"].getString("CaptureMode"), "full");
	EXPECT_NE(two["vdd"].getString("CaptureReason").value_or("").find("missing"), std::string::npos);
	// The other disks still had it: they continue.
	EXPECT_EQ(two["vdb"].getString("CaptureMode"), "incremental") << second.out;
	EXPECT_EQ(compareRestore(two["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"), "raw", &out), 0)
		<< out;
	EXPECT_EQ(checkpoints(), std::vector<std::string>{two["vdd"].getString("SnapshotSetId").value_or("")});
}

TEST_F(LibvirtTest, ABitmapInconsistentAfterACrashMeansAFullReadThenIncrementalsAgain)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	ASSERT_EQ(snapshotAll({"--quiesce", "off"}).status, 0);
	// `virsh destroy` sends SIGTERM first, on which QEMU 7.2 stores its
	// bitmaps cleanly; loaded again, they are marked in use in the image,
	// and a SIGKILL (what destroy falls back to) leaves them so.
	ASSERT_EQ(virsh({"destroy", name_}), 0);
	ASSERT_NO_FATAL_FAILURE(start());
	std::string pid = qemuPid();
	ASSERT_FALSE(pid.empty());
	::kill(std::stoi(pid), SIGKILL);
	for (int i = 0; i < 100; i++) {
		std::string state;
		virsh({"domstate", name_}, &state);
		if (state.find("shut off") != std::string::npos)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
	std::string info;
	runCommand({"qemu-img", "info", file("vdd.qcow2")}, &info);
	ASSERT_NE(info.find("in-use"), std::string::npos) << info;
	ASSERT_NO_FATAL_FAILURE(start());

	CliResult second = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(second.status, 0) << second.err;
	auto two = byDisk(second.json());
	EXPECT_EQ(two["vdd"].getString("CaptureMode"), "full");
	EXPECT_NE(two["vdd"].getString("CaptureReason").value_or("").find("inconsistent"), std::string::npos)
		<< second.out;

	ASSERT_NO_FATAL_FAILURE(writeBoth("0xd1", "5M", "64k"));
	CliResult third = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(third.status, 0) << third.err;
	auto three = byDisk(third.json());
	EXPECT_EQ(three["vdd"].getString("CaptureMode"), "incremental");
	std::string out;
	EXPECT_EQ(compareRestore(three["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"), "raw", &out), 0)
		<< out;
}

TEST_F(LibvirtTest, AnAddedDiskIsTakenInFullAndTheOthersContinue)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	ASSERT_EQ(snapshotAll({"--quiesce", "off"}).status, 0);
	std::string out;
	ASSERT_EQ(runCommand({"qemu-img", "create", "-q", "-f", "qcow2", file("vde.qcow2"), "32M"}, &out), 0);
	ASSERT_EQ(runCommand({"qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 1M", file("vde.qcow2")}, &out), 0);
	ASSERT_EQ(virsh({"attach-disk", name_, file("vde.qcow2"), "vde", "--subdriver", "qcow2", "--live"}, &out), 0)
		<< out;

	CliResult second = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(second.status, 0) << second.err;
	auto two = byDisk(second.json());
	ASSERT_EQ(two.size(), 5u) << second.out;
	EXPECT_EQ(two["vde"].getString("CaptureMode"), "full");
	for (const char *d : {"vda", "vdb", "vdc", "vdd"})
		EXPECT_EQ(two[d].getString("CaptureMode"), "incremental") << d;
	ASSERT_NO_FATAL_FAILURE(writeBoth("0xe1", "9M", "64k"));
	CliResult third = snapshotAll({"--quiesce", "off"});
	ASSERT_EQ(third.status, 0) << third.err;
	EXPECT_EQ(byDisk(third.json())["vde"].getString("CaptureMode"), "incremental");
	EXPECT_EQ(compareRestore(byDisk(third.json())["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"), "raw",
				 &out),
		  0)
		<< out;
}

TEST_F(LibvirtTest, AShutOffDomainIsReadFromItsImagesAndRestoredWhole)
{
	ASSERT_NO_FATAL_FAILURE(define("", luksDisk()));
	CliResult first = snapshotAll();
	ASSERT_EQ(first.status, 0) << first.err;
	auto one = byDisk(first.json());
	EXPECT_EQ(one["vdd"].getString("ConsistencyLevel"), "crash");
	EXPECT_EQ(one["vde"].getBool("Encrypted"), true) << first.out;
	std::string out;
	EXPECT_EQ(compareRestore(one["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"), "raw", &out), 0)
		<< out;
	// The bitmap reached the image: the next one is incremental. vde
	// changes too: the restore below must bring its marker back.
	ASSERT_EQ(runCommand({"qemu-io", "-f", "qcow2", "-c", "write -P 0x31 6M 64k", file("vdd.qcow2")}, &out), 0);
	ASSERT_EQ(runCommand({"qemu-io", "--object", "secret,id=sec0,file=" + file("vde.pass") + ",format=raw",
			      "--image-opts", "-c", "write -P 0x44 1M 64k",
			      "driver=qcow2,file.filename=" + file("vde.qcow2") + ",encrypt.key-secret=sec0"},
			     &out),
		  0)
		<< out;
	ASSERT_NE(compareLuks(file("vde.qcow2"), file("ref-vde.raw"), &out), 0);
	CliResult second = snapshotAll();
	ASSERT_EQ(second.status, 0) << second.err;
	auto two = byDisk(second.json());
	EXPECT_EQ(two["vdd"].getString("CaptureMode"), "incremental");
	EXPECT_EQ(two["vdd"].getInt("BytesRead"), 64 * 1024);

	// restore-instance writes the first set back over every disk. The
	// encrypted vde stays a LUKS qcow2 under its libvirt secret, with
	// the guest's data and no plaintext of it. (A short key derivation
	// keeps the LUKS image cheap to write.)
	std::string set = one["vdd"].getString("SnapshotSetId").value_or("");
	std::ofstream(tmp_.file("luks.conf")) << "[restore]\nluks-iter-time = 10\n";
	CliResult restored = cli({"--config", tmp_.file("luks.conf"), "restore-instance", "--snapshot-set-id", set,
				  "--domain", name_, "--connect", kUri});
	ASSERT_EQ(restored.status, 0) << restored.err;
	EXPECT_EQ(runCommand({"qemu-img", "compare", "-f", "qcow2", "-F", "raw", file("vdd.qcow2"), file("ref.raw")},
			     &out),
		  0)
		<< out;
	ASSERT_EQ(runCommand({"qemu-img", "info", "--output=json", file("vde.qcow2")}, &out), 0) << out;
	EXPECT_EQ(Json::parse(out).value_or(Json()).getBool("encrypted"), true) << out;
	EXPECT_EQ(compareLuks(file("vde.qcow2"), file("ref-vde.raw"), &out), 0) << out;
	EXPECT_EQ(readFile(file("vde.qcow2")).find(kLibvirtLuksMarker), std::string::npos) << "plaintext in vde.qcow2";
	// create-volume --domain --disk: the latest snapshot, into a new file.
	CliResult vol = cli({"create-volume", "--domain", name_, "--disk", "vdd", "--format", "raw"});
	ASSERT_EQ(vol.status, 0) << vol.err;
	std::string made = vol.json().getString("Target").value_or("");
	EXPECT_EQ(vol.json().getString("SnapshotId"), two["vdd"].getString("SnapshotId"));
	EXPECT_TRUE(fs::exists(made)) << vol.out;

	// Running, restore-instance is refused and changes nothing.
	ASSERT_NO_FATAL_FAILURE(start());
	CliResult refused = cli({"restore-instance", "--snapshot-set-id", set, "--domain", name_});
	EXPECT_NE(refused.status, 0);
	EXPECT_NE(refused.err.find("running"), std::string::npos) << refused.err;
}

// restore-instance --instant: the shut-off domain starts at once on
// qcow2 images over its set's exports (NBD backings libvirt probes from the
// images), its agent answers while libvirt's block pulls, slowed, still
// run, and once they end every disk stands alone. vdd, which the guest
// never writes, then equals a classic restore of its snapshot byte for
// byte; vda..vdc hold the guest's mounts' writes, so of them only that
// they stand alone is comparable.
TEST_F(LibvirtTest, AnInstantRestoreBootsBeforeItsCopyEndsAndEndsAsAClassicRestore)
{
	SKIP_WHERE_NBDKIT_CANNOT_LOAD_THE_PLUGIN();
	REQUIRE_TOOL("nbdkit");
	ASSERT_NO_FATAL_FAILURE(define());
	CliResult taken = snapshotAll();
	ASSERT_EQ(taken.status, 0) << taken.err;
	auto snaps = byDisk(taken.json());
	std::string set = snaps["vdd"].getString("SnapshotSetId").value_or("");
	std::string classic = tmp_.file("vdd-classic.qcow2");
	CliResult made = cli({"create-volume", "--snapshot-id", snaps["vdd"].getString("SnapshotId").value_or(""),
			      "--target", classic});
	ASSERT_EQ(made.status, 0) << made.err;
	// QEMU's user reaches the exports' sockets, beside the images, through
	// the directory's group.
	struct group *qemuGroup = ::getgrnam("libvirt-qemu");
	ASSERT_NE(qemuGroup, nullptr);
	ASSERT_EQ(::chown(dir_.c_str(), uid_t(-1), qemuGroup->gr_gid), 0);
	ASSERT_TRUE(::truncate(file("serial.log").c_str(), 0) == 0 || errno == ENOENT);
	std::string daemonSocket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(daemonSocket));
	ASSERT_TRUE(daemon.start());

	CliResult r = cli({"restore-instance", "--snapshot-set-id", set, "--domain", name_, "--connect", kUri, "--instant",
			   "--speed", "1048576"},
			  daemonSocket);
	ASSERT_EQ(r.status, 0) << r.err;
	EXPECT_EQ(r.json().get("Volumes").size(), 4u) << r.out;
	EXPECT_GT(r.json().getInt("ReadyMillis").value_or(0), 0) << r.out;
	auto deadline = Clock::now() + std::chrono::seconds(120);
	while (readFile(file("serial.log")).find("VIRTSNAP-GUEST-READY") == std::string::npos) {
		ASSERT_LT(Clock::now(), deadline) << "guest did not come up:\n" << readFile(file("serial.log"));
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	}
	// libvirt sees the agent's channel open a moment after the guest says
	// it is up, later on a loaded machine.
	std::string out;
	for (auto agentDeadline = Clock::now() + std::chrono::seconds(30);
	     virsh({"qemu-agent-command", name_, R"({"execute":"guest-ping"})"}, &out) != 0;
	     std::this_thread::sleep_for(std::chrono::milliseconds(200)))
		ASSERT_LT(Clock::now(), agentDeadline) << "the agent never answered: " << out;
	// The disks are copied one at a time: one is being copied still.
	std::string jobs;
	for (const char *d : {"vda", "vdb", "vdc", "vdd"}) {
		virsh({"blockjob", name_, d, "--info"}, &out);
		jobs += out;
	}
	EXPECT_NE(jobs.find("Block Pull"), std::string::npos) << "the copy ended before the guest answered: " << jobs;

	// Then at full speed, each copy as it starts.
	Json list;
	for (int i = 0; i < 300; i++) {
		for (const char *d : {"vda", "vdb", "vdc", "vdd"})
			virsh({"blockjob", name_, d, "--bandwidth", "0"});
		CliResult listed = cli({"describe-instant-restores"}, daemonSocket);
		list = listed.json().get("InstantRestores");
		size_t initializing = 0;
		for (size_t k = 0; k < list.size(); k++)
			initializing += list.at(k).getString("State") == "initializing";
		if (initializing == 0)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	}
	ASSERT_EQ(list.size(), 4u) << list.dump();
	for (size_t k = 0; k < list.size(); k++) {
		Json v = list.at(k);
		EXPECT_EQ(v.getString("State"), "available") << v.dump();
		EXPECT_GE(v.getInt("CopiedMillis").value_or(-1), v.getInt("ReadyMillis").value_or(0)) << v.dump();
		std::printf("instant restore of %s: ready after %lld ms, copied after %lld ms, %lld bytes from the store\n",
			    v.getString("Disk").value_or("").c_str(), (long long)v.getInt("ReadyMillis").value_or(0),
			    (long long)v.getInt("CopiedMillis").value_or(0), (long long)v.getInt("BytesFromStore").value_or(0));
		std::string image = v.getString("Target").value_or("");
		ASSERT_EQ(runCommand({"qemu-img", "info", "-U", "--output=json", image}, &out), 0) << out;
		EXPECT_EQ(out.find("backing-filename"), std::string::npos) << out;
	}
	// QEMU keeps the image's tables in memory: written out, the image
	// reads from outside as the guest sees it.
	ASSERT_EQ(virsh({"qemu-monitor-command", name_, "--hmp",
			 "qemu-io -d /machine/peripheral/virtio-disk3/virtio-backend \"flush\""},
			&out),
		  0)
		<< out;
	EXPECT_EQ(runCommand({"qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", file("vdd.qcow2"), classic}, &out),
		  0)
		<< out;
	EXPECT_EQ(runCommand({"qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", file("vdd.qcow2"), file("ref.raw")},
			     &out),
		  0)
		<< out;
	CliResult exports = cli({"describe-exports"}, daemonSocket);
	EXPECT_EQ(exports.json().get("Exports").size(), 0u) << exports.out;
}

// A running domain that opted in through its metadata, as the example
// script reads it, is an INSTANCE policy's target: a run takes one set of
// all its disks, with the policy's tags. A policy whose tag the metadata
// does not carry takes nothing.
TEST_F(LibvirtTest, APolicyTargetsADomainByItsPolicyMetadata)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	std::string out;
	ASSERT_EQ(virsh({"metadata", name_, "https://virtsnap.example/policy", "--key", "virtsnap", "--live", "--set",
			 "<policy><tag key='backup' value='by-domain-metadata'/></policy>"},
			&out),
		  0)
		<< out;
	// The domain's own product codes go into the snapshots the policy takes.
	ASSERT_EQ(virsh({"metadata", name_, "https://virtsnap.example/product-codes", "--key", "virtsnap", "--live",
			 "--set", "<product-codes><product-code>lv1:devpay</product-code></product-codes>"},
			&out),
		  0)
		<< out;
	auto policyFor = [&](const std::string &value) {
		CliResult r = cli({"create-lifecycle-policy", "--description", "by metadata", "--policy-details",
				   R"({"ResourceTypes": ["INSTANCE"], "TargetTags": [{"Key": "backup", "Value": ")" + value +
					   R"("}], "Schedules": [{"Name": "s", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS"},
					   "RetainRule": {"Count": 2}}]})"});
		EXPECT_EQ(r.status, 0) << r.err;
		return r.json().getString("PolicyId").value_or("");
	};
	// A value of its own: the other part's policy tests run alongside, on
	// this host's libvirt too, and target backup=nightly.
	std::string nightly = policyFor("by-domain-metadata"), weekly = policyFor("weekly");

	CliResult run = cli({"run-lifecycle-policy", "--policy-id", nightly});
	ASSERT_EQ(run.status, 0) << run.err;
	Json result = run.json().get("Runs").at(0);
	EXPECT_EQ(result.getString("Outcome"), "succeeded") << run.out;
	EXPECT_EQ(result.get("SnapshotIds").size(), 4u) << run.out;
	CliResult tagged = cli({"describe-snapshots", "--filter", "Name=tag:aws:dlm:lifecycle-policy-id,Values=" + nightly});
	EXPECT_EQ(tagged.json().get("Snapshots").size(), 4u) << tagged.out;
	CliResult coded = cli({"describe-snapshots", "--filter", "Name=product-code,Values=lv1", "--filter",
			       "Name=product-code.type,Values=devpay"});
	EXPECT_EQ(coded.json().get("Snapshots").size(), 4u) << coded.out;

	CliResult none = cli({"run-lifecycle-policy", "--policy-id", weekly});
	ASSERT_EQ(none.status, 0) << none.err;
	EXPECT_EQ(none.json().get("Runs").at(0).get("SnapshotIds").size(), 0u) << none.out;
}

TEST_F(LibvirtTest, AHibernatedOrHibernatingDomainIsRefused)
{
	ASSERT_NO_FATAL_FAILURE(boot("<pm><suspend-to-disk enabled='yes'/></pm>"));
	CliResult pm = snapshotAll();
	EXPECT_NE(pm.status, 0);
	EXPECT_NE(pm.err.find("hibernation enabled"), std::string::npos) << pm.err;
	virsh({"destroy", name_});
	virsh({"undefine", name_});
	fs::remove_all(dir_);
	fs::create_directories(dir_);
	::chmod(dir_.c_str(), 0755);

	ASSERT_NO_FATAL_FAILURE(boot());
	std::string out;
	ASSERT_EQ(virsh({"managedsave", name_}, &out), 0) << out;
	CliResult saved = snapshotAll();
	EXPECT_NE(saved.status, 0);
	EXPECT_NE(saved.err.find("hibernated"), std::string::npos) << saved.err;
	// Refused before anything was made.
	EXPECT_TRUE(checkpoints().empty());
	CliResult listed = cli({"describe-snapshots"});
	EXPECT_EQ(listed.json().get("Snapshots").size(), 0u) << listed.out;
}

// A QEMU that stopped answering under libvirt: libvirt waits on its monitor
// forever, virtsnap [hypervisor] timeout. Once QEMU runs again, what
// libvirt still had in flight ends: no job, no checkpoint, the guest not
// frozen, and the next snapshot goes through.
TEST_F(LibvirtTest, AStoppedQemuFailsACreateWithinTheTimeoutAndLeavesNoJob)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	std::string config = tmp_.file("virtsnap.conf");
	std::ofstream(config) << "[hypervisor]\ntimeout = 2\n";
	std::vector<std::string> create{"--config", config, "create-snapshots", "--domain", name_,
					"--connect", kUri, "--wait"};
	std::chrono::milliseconds took;
	CliResult r = cliWhileStopped(std::atoi(qemuPid().c_str()), create, &took);
	EXPECT_EQ(r.status, 1);
	EXPECT_NE(r.err.find("HypervisorError"), std::string::npos) << r.err;
	EXPECT_NE(r.err.find("did not answer"), std::string::npos) << r.err;
	EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	EXPECT_LT(took, std::chrono::seconds(10));

	std::string job;
	for (auto deadline = Clock::now() + std::chrono::seconds(30); Clock::now() < deadline;) {
		virsh({"domjobinfo", name_}, &job);
		if (job.find("None") != std::string::npos)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	}
	EXPECT_NE(job.find("None"), std::string::npos) << job;
	EXPECT_TRUE(checkpoints().empty());
	EXPECT_EQ(freezeStatus(), "thawed");

	CliResult again = cli(create);
	ASSERT_EQ(again.status, 0) << again.err;
	std::string out;
	EXPECT_EQ(compareRestore(byDisk(again.json())["vdd"].getString("SnapshotId").value_or(""), file("ref.raw"),
				 "raw", &out),
		  0)
		<< out;
}

// A freeze that outlasts its timeout runs on after virtsnap gave up on it
// (the guest's freeze hook holds it, as a stalled FIFREEZE would). libvirt
// sends a thaw only behind a guest-sync, which the busy agent does not
// answer; the daemon retries the thaw until it lands, after the freeze.
TEST_F(LibvirtTest, AFreezeThatOutlastsItsTimeoutIsThawedOnceItEnds)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	std::string socket = tmp_.file("d.sock");
	Virtsnapd daemon(daemonOptions(socket));
	ASSERT_TRUE(daemon.start());
	ASSERT_NO_FATAL_FAILURE(guestShell("touch /run/hold-freeze"));
	auto held = Clock::now();
	constexpr auto kHold = std::chrono::seconds(10);
	ASSERT_NO_FATAL_FAILURE(guestShell("sleep 10; rm -f /run/hold-freeze", true));

	CliResult r = cli({"create-snapshots", "--domain", name_, "--connect", kUri, "--quiesce", "try",
			   "--freeze-timeout", "2", "--wait"},
			  socket);
	ASSERT_EQ(r.status, 0) << r.err;
	for (auto &[disk, s] : byDisk(r.json()))
		EXPECT_EQ(s.getString("ConsistencyLevel"), "crash") << disk;
	// The hold over, the agent freezes; only a thaw sent after that
	// leaves the guest thawed.
	std::this_thread::sleep_for(kHold - since(held) + std::chrono::seconds(1));
	std::string status;
	for (auto deadline = Clock::now() + std::chrono::seconds(40); Clock::now() < deadline;) {
		status = freezeStatus();
		if (status == "thawed")
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(500));
	}
	EXPECT_EQ(status, "thawed") << readFile(tmp_.file("virtsnapd.log"));
}

// The hook as libvirtd runs it: installed in its hook directory (a wrapper
// that points the hook at this test's daemon socket and logs each call),
// with libvirtd restarted to see it.
class LibvirtHookTest : public LibvirtTest
{
protected:
	static constexpr const char *kHookFile = "/etc/libvirt/hooks/qemu.d/virtsnap";

	void SetUp() override
	{
		ASSERT_NO_FATAL_FAILURE(LibvirtTest::SetUp());
		const char *hook = std::getenv("VIRTSNAP_HOOK_BIN");
		ASSERT_TRUE(hook);
		hookBin_ = hook;
		fs::create_directories(fs::path(kHookFile).parent_path());
		std::ofstream(kHookFile) << "#!/bin/sh\necho \"$@\" >> " << file("hook.log") << "\nVIRTSNAP_SOCKET="
					 << socket_ << " exec " << hookBin_ << " \"$@\"\n";
		::chmod(kHookFile, 0755);
		restartLibvirtd();
	}

	void TearDown() override
	{
		stopDaemon();
		LibvirtTest::TearDown();
		::unlink(kHookFile);
		restartLibvirtd();
	}

	// `env`: more of the daemon's environment, "NAME=VALUE" each.
	void startDaemon(const std::vector<std::string> &env = {}) { ASSERT_TRUE(daemon_.start({}, env)); }
	void stopDaemon() { daemon_.stop(); }

	// The daemon's PATH with a qemu-img that, while holdFile() exists,
	// stops before it creates an image (restore-instance creates the
	// qcow2 of each disk it restores) and creates heldFile(): the test
	// acts while a restore is writing the disks, knowing rather than
	// guessing that it is. Held two minutes at most, should the test never
	// let go.
	std::string holdingPath()
	{
		std::string bin = tmp_.file("holding-bin");
		fs::create_directories(bin);
		std::ofstream(bin + "/qemu-img")
			<< "#!/bin/sh\nif [ \"$1\" = create ] && [ -e " << holdFile() << " ]; then\n\t: > " << heldFile()
			<< "\n\ti=0\n\twhile [ -e " << holdFile()
			<< " ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done\nfi\nexec "
			<< findTool("qemu-img").value_or("qemu-img") << " \"$@\"\n";
		::chmod((bin + "/qemu-img").c_str(), 0755);
		return "PATH=" + bin + ":" + envOr("PATH");
	}
	// The daemon's PATH with a qemu-img whose image creation number N
	// fails while failFile() holds N: a failure injected into a restore
	// (one qcow2 created per disk).
	std::string failingPath()
	{
		std::string bin = tmp_.file("failing-bin");
		fs::create_directories(bin);
		const std::string fail = failFile();
		std::ofstream(bin + "/qemu-img")
			<< "#!/bin/sh\nif [ \"$1\" = create ] && [ -e " << fail << " ]; then\n"
			<< "\tn=$(($(cat " << fail << ".count 2>/dev/null || echo 0) + 1))\n"
			<< "\techo $n > " << fail << ".count\n"
			<< "\tif [ $n = \"$(cat " << fail << ")\" ]; then echo 'qemu-img: injected failure' >&2; exit 1; fi\n"
			<< "fi\nexec " << findTool("qemu-img").value_or("qemu-img") << " \"$@\"\n";
		::chmod((bin + "/qemu-img").c_str(), 0755);
		return "PATH=" + bin + ":" + envOr("PATH");
	}
	std::string failFile() const { return tmp_.file("fail"); }

	// The domain defined, a daemon started with `env`, and the id of a set
	// of all its disks taken through it.
	std::string definedSetWithDaemon(const std::string &env)
	{
		define();
		if (!HasFatalFailure())
			startDaemon({env});
		if (HasFatalFailure())
			return "";
		CliResult snap = snapshotAll({}, socket_);
		EXPECT_EQ(snap.status, 0) << snap.err;
		return byDisk(snap.json())["vdd"].getString("SnapshotSetId").value_or("");
	}
	std::string holdFile() const { return tmp_.file("hold"); }
	std::string heldFile() const { return tmp_.file("held"); }

	// The hook called as libvirt calls it: libvirt's description of the
	// domain on stdin.
	int callHook(const std::string &op, const std::string &sub, std::string *out)
	{
		std::string xml;
		EXPECT_EQ(virsh({"dumpxml", name_}, &xml), 0) << xml;
		std::ofstream(file("live.xml")) << xml;
		return runCommand({"sh", "-c",
				   "VIRTSNAP_SOCKET=" + socket_ + " " + hookBin_ + " " + name_ + " " + op + " " + sub +
					   " - < " + file("live.xml") + " 2>&1"},
				  out);
	}

	std::string state(const std::string &snapshotId)
	{
		CliResult r = cli({"describe-snapshots", "--snapshot-id", snapshotId}, socket_);
		return r.json().get("Snapshots").at(0).getString("State").value_or("") + ": " +
		       r.json().get("Snapshots").at(0).getString("StateMessage").value_or("");
	}

	std::string hookBin_, socket_ = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon_{daemonOptions(socket_)};
};

TEST_F(LibvirtHookTest, WithoutADaemonTheDomainStartsAndTheHookSaysNothing)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	std::string log = readFile(file("hook.log"));
	EXPECT_NE(log.find(name_ + " prepare begin"), std::string::npos) << log;
	EXPECT_NE(log.find(name_ + " started begin"), std::string::npos) << log;
	std::string out;
	EXPECT_EQ(callHook("migrate", "begin", &out), 0);
	EXPECT_EQ(out, "");
}

TEST_F(LibvirtHookTest, MigrationIsRefusedDuringACaptureAndAStopFailsPendingJobs)
{
	ASSERT_NO_FATAL_FAILURE(define());
	// A disk of random bytes, big enough that its transfer still runs
	// while the second snapshot is asked for and QEMU is stopped.
	std::string out;
	ASSERT_EQ(runCommand({"sh", "-c", "head -c 1G /dev/urandom > " + file("big.raw")}, &out), 0);
	ASSERT_EQ(virsh({"attach-disk", name_, file("big.raw"), "vdf", "--subdriver", "raw", "--config"}, &out), 0)
		<< out;
	ASSERT_NO_FATAL_FAILURE(start());
	ASSERT_NO_FATAL_FAILURE(startDaemon());

	CliResult first = cli({"create-snapshot", "--domain", name_, "--disk", "vdf", "--quiesce", "off"}, socket_);
	ASSERT_EQ(first.status, 0) << first.err;
	std::string firstId = first.json().getString("SnapshotId").value_or("");
	// Queued behind the live capture (libvirt runs one per domain).
	CliResult second = cli({"create-snapshot", "--domain", name_, "--disk", "vdd", "--quiesce", "off"}, socket_);
	ASSERT_EQ(second.status, 0) << second.err;
	std::string secondId = second.json().getString("SnapshotId").value_or("");
	ASSERT_TRUE(state(firstId).starts_with("pending")) << "the transfer ended too soon: " << state(firstId);
	EXPECT_TRUE(state(secondId).starts_with("pending")) << state(secondId);

	// Freeze QEMU itself: the transfer stalls, the capture stays alive.
	// (Nothing below asks libvirt for the monitor: a stopped QEMU would
	// not answer it.)
	std::string pid = qemuPid();
	ASSERT_FALSE(pid.empty());
	::kill(std::stoi(pid), SIGSTOP);

	EXPECT_EQ(callHook("migrate", "begin", &out), 1);
	EXPECT_NE(out.find("snapshot in progress"), std::string::npos) << out;

	// The domain dies; libvirt runs the hook's "stopped" and "release".
	::kill(std::stoi(pid), SIGKILL);
	::kill(std::stoi(pid), SIGCONT);
	auto deadline = Clock::now() + std::chrono::seconds(30);
	while (state(secondId).starts_with("pending") && Clock::now() < deadline)
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	EXPECT_NE(state(secondId).find("stopped during the snapshot"), std::string::npos) << state(secondId);
	while (state(firstId).starts_with("pending") && Clock::now() < deadline)
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	EXPECT_TRUE(state(firstId).starts_with("error")) << state(firstId);
	CliResult vols = cli({"describe-volumes", "--domain", name_}, socket_);
	EXPECT_NE(vols.out.find("\"BitmapsSuspect\":true"), std::string::npos) << vols.out;

	// No capture is alive now: migration may go.
	EXPECT_EQ(callHook("migrate", "begin", &out), 0) << out;
	std::string log = readFile(file("hook.log"));
	EXPECT_NE(log.find(name_ + " stopped end"), std::string::npos) << log;
}

// libvirt runs `started begin` when a domain starts and `reconnect begin`
// when a restarted libvirtd finds it running: either way the daemon
// redefines the checkpoints virtsnap continues from that libvirt lost, as
// long as the images still hold their bitmaps.
TEST_F(LibvirtHookTest, StartedAndReconnectRedefineACheckpointLibvirtLost)
{
	ASSERT_NO_FATAL_FAILURE(boot());
	ASSERT_NO_FATAL_FAILURE(startDaemon());
	CliResult first = snapshotAll({"--quiesce", "off"}, socket_);
	ASSERT_EQ(first.status, 0) << first.err;
	const std::string cp = byDisk(first.json())["vdd"].getString("SnapshotSetId").value_or("");
	for (const char *op : {"started", "reconnect"}) {
		SCOPED_TRACE(op);
		// (Absent already when the last event failed to redefine it.)
		virsh({"checkpoint-delete", name_, cp, "--metadata"});
		ASSERT_TRUE(checkpoints().empty());
		// A daemon of its own for each event: it skips an event while
		// the domain's last reconcile has yet to retire.
		stopDaemon();
		ASSERT_NO_FATAL_FAILURE(startDaemon());
		std::string out;
		EXPECT_EQ(callHook(op, "begin", &out), 0);
		EXPECT_EQ(out, "");
		// The reconcile asks libvirt, so it runs after the hook returned.
		auto deadline = Clock::now() + std::chrono::seconds(30);
		while (checkpoints().empty() && Clock::now() < deadline)
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		EXPECT_EQ(checkpoints(), std::vector<std::string>{cp}) << readFile(daemon_.options().logFile);
	}
	// The checkpoint the hook redefined is one the chain continues from.
	ASSERT_NO_FATAL_FAILURE(writeBoth("0xf1", "4M", "64k"));
	CliResult second = snapshotAll({"--quiesce", "off"}, socket_);
	ASSERT_EQ(second.status, 0) << second.err;
	auto two = byDisk(second.json());
	EXPECT_EQ(two["vdd"].getString("CaptureMode"), "incremental") << second.out;
	EXPECT_EQ(two["vdd"].getInt("BytesRead"), 64 * 1024);
}

// restore-instance is all or nothing: a failure on the last disk it writes
// leaves every disk of the domain as it was, and the next run puts the
// whole set in place. Every disk is compared, against copies made with cp.
TEST_F(LibvirtHookTest, ARestoreThatFailsOnItsLastDiskLeavesEveryDiskAsItWas)
{
	std::string set;
	ASSERT_NO_FATAL_FAILURE(set = definedSetWithDaemon(failingPath()));
	const std::vector<std::string> disks{"vda", "vdb", "vdc", "vdd"};
	std::string out;
	for (const std::string &d : disks) {
		fs::copy_file(file(d + ".qcow2"), file("set-" + d + ".qcow2"));
		ASSERT_EQ(runCommand({"qemu-io", "-f", "qcow2", "-c", "write -P 0x77 1M 64k", file(d + ".qcow2")}, &out),
			  0)
			<< out;
		fs::copy_file(file(d + ".qcow2"), file("changed-" + d + ".qcow2"));
	}
	auto sameAs = [&](const std::string &disk, const std::string &copy) {
		std::string diff;
		int r = runCommand({"qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", file(disk + ".qcow2"), copy},
				   &diff);
		EXPECT_EQ(r, 0) << disk << " differs from " << copy << ": " << diff;
	};

	std::ofstream(failFile()) << disks.size() << "\n";
	CliResult failed = cli({"restore-instance", "--snapshot-set-id", set, "--domain", name_, "--connect", kUri},
			       socket_);
	EXPECT_EQ(failed.status, 1);
	EXPECT_NE(failed.err.find("injected failure"), std::string::npos) << failed.err;
	EXPECT_EQ(std::count(failed.err.begin(), failed.err.end(), '\n'), 1) << failed.err;
	ASSERT_EQ(readFile(failFile() + ".count"), std::to_string(disks.size()) + "\n")
		<< "the failure was not injected into the last disk";
	for (const std::string &d : disks)
		sameAs(d, file("changed-" + d + ".qcow2"));
	EXPECT_EQ(filesContaining(dir_, ".tmp-"), std::vector<fs::path>{});
	EXPECT_EQ(filesContaining(tmp_.path(), ".restore-journal"), std::vector<fs::path>{});

	fs::remove(failFile());
	CliResult restored = cli({"restore-instance", "--snapshot-set-id", set, "--domain", name_, "--connect", kUri},
				 socket_);
	ASSERT_EQ(restored.status, 0) << restored.err;
	for (const std::string &d : disks)
		sameAs(d, file("set-" + d + ".qcow2"));
	EXPECT_EQ(filesContaining(tmp_.path(), ".restore-journal"), std::vector<fs::path>{});
}

// libvirt does not start a domain while restore-instance writes its disks
// (the hook's `prepare begin` is refused), and does once the restore is
// done. Started paused: the guest need not boot for libvirt to say yes.
TEST_F(LibvirtHookTest, AStartIsRefusedWhileRestoreInstanceWritesTheDisks)
{
	std::string set;
	ASSERT_NO_FATAL_FAILURE(set = definedSetWithDaemon(holdingPath()));

	std::ofstream(holdFile()).close();
	auto restore = std::async(std::launch::async, [&] {
		return cli({"restore-instance", "--snapshot-set-id", set, "--domain", name_, "--connect", kUri},
			   socket_);
	});
	// However the test ends, the restore goes on (and `restore` waits
	// for it).
	struct Release {
		std::string hold;
		~Release() { ::unlink(hold.c_str()); }
	} release{holdFile()};
	auto deadline = Clock::now() + std::chrono::seconds(60);
	while (!fs::exists(heldFile())) {
		ASSERT_EQ(restore.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout)
			<< "the restore ended before it converted a disk: " << restore.get().err;
		ASSERT_LT(Clock::now(), deadline) << "the restore never converted a disk";
	}

	std::string out;
	EXPECT_EQ(callHook("prepare", "begin", &out), 1);
	EXPECT_NE(out.find("restore-instance is writing the disks of domain"), std::string::npos) << out;
	EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
	// libvirt itself, through the installed hook.
	EXPECT_NE(virsh({"start", "--paused", name_}, &out), 0) << out;
	EXPECT_NE(out.find("restore-instance is writing the disks of domain"), std::string::npos) << out;

	::unlink(holdFile().c_str());
	CliResult restored = restore.get();
	ASSERT_EQ(restored.status, 0) << restored.err;
	EXPECT_EQ(callHook("prepare", "begin", &out), 0) << out;
	EXPECT_EQ(out, "");
	EXPECT_EQ(virsh({"start", "--paused", name_}, &out), 0) << out;
}

// Captures that fail before libvirt's backup job starts, on domains started
// paused: they never boot, as nothing here needs a guest.
class LibvirtFailedCaptureTest : public LibvirtTest
{
protected:
	// `devicesXml` goes inside <devices>; there is no guest agent channel.
	void startPaused(const std::string &devicesXml)
	{
		std::string xml = "<domain type='qemu'><name>" + name_ +
				  "</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
				  "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>" +
				  devicesXml + "</devices></domain>";
		std::ofstream(file("paused.xml")) << xml;
		std::string out;
		ASSERT_EQ(virsh({"define", file("paused.xml")}, &out), 0) << out;
		ASSERT_EQ(virsh({"start", "--paused", name_}, &out), 0) << out;
	}

	// startPaused() with one empty 16 MiB qcow2 disk, vda.
	void startPausedWithOneDisk()
	{
		std::string out;
		ASSERT_EQ(runCommand({"qemu-img", "create", "-q", "-f", "qcow2", file("vda.qcow2"), "16M"}, &out), 0)
			<< out;
		startPaused("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='" +
			    file("vda.qcow2") + "'/><target dev='vda' bus='virtio'/></disk>");
	}

	// The running-domain capture's scratch directories: under /var/tmp,
	// where QEMU's user reaches them.
	static std::set<std::string> scratchDirs()
	{
		std::set<std::string> found;
		std::error_code ec;
		for (const auto &e : fs::directory_iterator("/var/tmp", ec))
			if (e.path().filename().string().starts_with("virtsnap-libvirt-"))
				found.insert(e.path().string());
		return found;
	}
};

// A capture asked for a disk the domain does not have (one unplugged since
// the disks were read) fails, and takes its scratch directory with it. The
// CLI refuses a domain without disks before any capture; the driver itself
// is asked for the rest, as no request through the CLI reaches it so.
TEST_F(LibvirtFailedCaptureTest, ACaptureOfADiskTheDomainLacksLeavesNoScratchDirectory)
{
	ASSERT_NO_FATAL_FAILURE(startPaused(""));
	const std::set<std::string> before = scratchDirs();

	CliResult refused = snapshotAll({"--quiesce", "off"});
	EXPECT_EQ(refused.status, 1);
	EXPECT_NE(refused.err.find("no disk"), std::string::npos) << refused.err;
	EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
	EXPECT_EQ(scratchDirs(), before);

	auto driver = hypervisor::LibvirtDriver::connect(kUri, name_);
	ASSERT_TRUE(driver) << driver.error().toString();
	hypervisor::CaptureRequest missing;
	missing.diskId = "vdz";
	missing.newBitmap = "ss-0123456789abcdef0";
	hypervisor::CaptureSpec spec;
	spec.disks.push_back(missing);
	spec.scratchDir = workRoot();
	auto capture = (*driver)->capture(spec);
	ASSERT_FALSE(capture);
	EXPECT_EQ(capture.error().code, errc::kDiskNotFound) << capture.error().toString();
	EXPECT_EQ(scratchDirs(), before);
}

// A capture hands its cleanup record over before it changes the domain
// (no checkpoint, no backup job yet), and the record names all it makes:
// what recovery removes after a process died mid-capture.
TEST_F(LibvirtFailedCaptureTest, TheCleanupRecordComesBeforeTheBackupBegins)
{
	ASSERT_NO_FATAL_FAILURE(startPausedWithOneDisk());
	const std::set<std::string> before = scratchDirs();
	auto jobRuns = [&] {
		std::string job;
		virsh({"domjobinfo", name_}, &job);
		return job.find("None") == std::string::npos;
	};
	auto driver = hypervisor::LibvirtDriver::connect(kUri, name_);
	ASSERT_TRUE(driver) << driver.error().toString();
	hypervisor::CaptureSpec spec;
	spec.disks.push_back({"vda", "ss-0123456789abcdef0", "", 65536, true, {}});
	spec.scratchDir = workRoot();

	// A caller that cannot record it stops the capture before any change.
	spec.beforeChanges = [](const std::string &) -> Result<void> { return fail(errc::kIo, "disk full"); };
	auto refused = (*driver)->capture(spec);
	ASSERT_FALSE(refused);
	EXPECT_NE(refused.error().message.find("disk full"), std::string::npos) << refused.error().toString();
	EXPECT_TRUE(checkpoints().empty());
	EXPECT_FALSE(jobRuns());
	EXPECT_EQ(scratchDirs(), before);

	std::string record;
	std::optional<std::vector<std::string>> checkpointsAtRecord;
	bool jobAtRecord = true;
	spec.beforeChanges = [&](const std::string &r) -> Result<void> {
		record = r;
		checkpointsAtRecord = checkpoints();
		jobAtRecord = jobRuns();
		return {};
	};
	auto cap = (*driver)->capture(spec);
	ASSERT_TRUE(cap) << cap.error().toString();
	ASSERT_TRUE(checkpointsAtRecord);
	EXPECT_TRUE(checkpointsAtRecord->empty()) << "the record came after the checkpoint";
	EXPECT_FALSE(jobAtRecord) << "the record came after the backup began";
	EXPECT_EQ(checkpoints(), std::vector<std::string>{"ss-0123456789abcdef0"});
	EXPECT_TRUE(jobRuns());
	// What recovery does with the record alone, as if the capture's
	// process had died here.
	(*driver)->removeLeftovers(record);
	EXPECT_TRUE(checkpoints().empty());
	EXPECT_FALSE(jobRuns());
	EXPECT_EQ(scratchDirs(), before);
	cap->reset();
	EXPECT_TRUE(checkpoints().empty());
	EXPECT_FALSE(jobRuns());
}

// A running domain's capture of an encrypted disk: what the guest
// overwrites while the capture is read goes to the backup's scratch file,
// encrypted under an ephemeral libvirt secret that goes with the capture;
// the export still reads the old data through it. The domain is paused:
// the writes come through the monitor.
class LibvirtScratchTest : public LibvirtFailedCaptureTest
{
protected:
	std::set<std::string> secrets()
	{
		std::string out;
		virsh({"secret-list"}, &out);
		std::set<std::string> uuids;
		for (const std::string &line : lines(out))
			if (line.size() > 36)
				uuids.insert(line.substr(line.find_first_not_of(' '), 36));
		return uuids;
	}
};

TEST_F(LibvirtScratchTest, TheScratchOfAnEncryptedDiskHoldsNoPlaintext)
{
	std::string disk = luksDisk();
	ASSERT_NO_FATAL_FAILURE(startPaused(disk));
	const std::set<std::string> dirsBefore = scratchDirs();
	const std::set<std::string> secretsBefore = secrets();
	auto driver = hypervisor::LibvirtDriver::connect(kUri, name_);
	ASSERT_TRUE(driver) << driver.error().toString();
	hypervisor::CaptureSpec spec;
	spec.disks.push_back({"vde", "ss-0123456789abcdef0", "", 65536, true, {}});
	spec.scratchDir = workRoot();
	auto cap = (*driver)->capture(spec);
	ASSERT_TRUE(cap) << cap.error().toString();
	EXPECT_EQ(secrets().size(), secretsBefore.size() + 1) << "the scratch's secret";

	std::string out;
	ASSERT_EQ(virsh({"qemu-monitor-command", name_, "--hmp",
			 "qemu-io -d /machine/peripheral/virtio-disk4/virtio-backend \"write -P 0x33 1M 64k\""},
			&out),
		  0)
		<< out;
	ASSERT_EQ(out.find("rror"), std::string::npos) << out;
	std::set<std::string> dirs = scratchDirs();
	for (const std::string &d : dirsBefore)
		dirs.erase(d);
	ASSERT_EQ(dirs.size(), 1u);
	const std::string scratchFile = *dirs.begin() + "/vde.scratch";
	ASSERT_NO_FATAL_FAILURE(expectEncryptedScratch(scratchFile, (*cap)->exports().at(0), kLibvirtLuksMarker,
						       tmp_.file("exported.raw")));

	cap->reset();
	EXPECT_EQ(secrets(), secretsBefore);
	EXPECT_EQ(scratchDirs(), dirsBefore);
}

// A required freeze that fails (the domain has no guest agent) refuses the
// snapshot at once, and leaves nothing behind.
TEST_F(LibvirtFailedCaptureTest, ARequiredFreezeWithoutAnAgentIsRefusedAtOnce)
{
	std::string out;
	ASSERT_NO_FATAL_FAILURE(startPausedWithOneDisk());
	const std::set<std::string> before = scratchDirs();
	const char *bin = std::getenv("VIRTSNAP_BIN");
	ASSERT_TRUE(bin);
	// Killed after a minute, should it hang.
	int status = runCommand({"env", "TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + tmp_.file("no-daemon.sock"),
				 "timeout", "-s", "KILL", "60", bin, "--store", storeDir_, "--key-file", keyFile_,
				 "create-snapshots", "--domain", name_, "--connect", kUri, "--wait", "--quiesce",
				 "required"},
				&out);
	EXPECT_EQ(status, 1) << out;
	EXPECT_NE(out.find("--quiesce required"), std::string::npos) << out;
	EXPECT_TRUE(checkpoints().empty());
	EXPECT_EQ(scratchDirs(), before);
}

} // namespace
} // namespace virtsnap::test
