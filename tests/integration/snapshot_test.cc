// The core slice end to end, against a real QEMU with no guest OS: the
// virtsnap binary snapshots a running disk, full then incremental, and every
// snapshot restores bit for bit. The references are built by this test with
// its own writes, never by the code under test.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <cstring>
#include <optional>
#include <random>
#include <set>

#include <openssl/evp.h>

#include "catalog/catalog.h"
#include "cli_fixture.h"
#include "core/ids.h"
#include "core/file_util.h"
#include "crypto/crypto.h"
#include "engine/block_api.h"
#include "store/snapshot_index.h"
#include "store/store.h"
#include "hypervisor/target.h"
#include "tests/support/qemu_instance.h"
#include "tests/support/qemu_residue.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;

constexpr uint64_t kDiskSize = 64 * kMiB;

class SnapshotTest : public QemuCliTest
{
protected:
	SnapshotTest() : QemuCliTest("vs-int") {}

	void SetUp() override
	{
		REQUIRE_QEMU();
		reference_ = tmp_.file("reference.raw");
		makeReference();
		startQemu(diskFormat());
		CliResult init = cli({"init"});
		ASSERT_EQ(init.status, 0) << init.err;
	}

	virtual std::string diskFormat() const { return "qcow2"; }

	// 16 MiB random, 16 MiB repetitive text, 32 MiB never written.
	void makeReference()
	{
		std::mt19937_64 rng(42);
		std::vector<uint8_t> data(kDiskSize, 0);
		fillRandom(rng, std::span(data.data(), 16 * kMiB));
		const std::string text = "virtsnap reference line, block-level test data 0123456789\n";
		for (uint64_t i = 16 * kMiB; i < 32 * kMiB; i++)
			data[i] = uint8_t(text[i % text.size()]);
		int fd = ::open(reference_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(::pwrite(fd, data.data(), 32 * kMiB, 0), ssize_t(32 * kMiB));
		ASSERT_EQ(::ftruncate(fd, kDiskSize), 0);
		::close(fd);
	}

	void startQemu(const std::string &format)
	{
		disk_ = tmp_.file("disk." + format);
		std::string error;
		if (!fs::exists(disk_)) {
			ASSERT_TRUE(convertImage(reference_, "raw", disk_, format, &error)) << error;
		}
		QemuOptions opts;
		opts.disks = {{disk_, format, "vda"}};
		opts.name = "vs-int";
		vm_ = QemuInstance::start(opts, &error);
		ASSERT_TRUE(vm_) << error;
	}

	Json snapshot(const std::vector<std::string> &extra = {})
	{
		std::vector<std::string> args{"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda",
					      "--wait"};
		args.insert(args.end(), extra.begin(), extra.end());
		CliResult r = cli(args);
		EXPECT_EQ(r.status, 0) << r.err;
		EXPECT_TRUE(r.err.empty()) << r.err;
		return r.json();
	}

	// The same write into the running disk and into the reference.
	void write(uint64_t offset, uint64_t length, uint8_t pattern)
	{
		mirrorWrite(*vm_, "vda", reference_, "", offset, length, pattern);
	}

	std::string saveReference(const std::string &name)
	{
		std::string path = tmp_.file(name);
		fs::copy_file(reference_, path);
		return path;
	}

	void expectRestoresTo(const std::string &snapshotId, const std::string &expected, const std::string &format)
	{
		std::string target = tmp_.file(snapshotId + "-restored." + format);
		CliResult r = cli({"create-volume", "--snapshot-id", snapshotId, "--target", target, "--format", format});
		ASSERT_EQ(r.status, 0) << r.err;
		EXPECT_TRUE(sameImage(target, format, expected)) << snapshotId;
	}

	// What the store holds; not the catalog and chunk map beside it, which
	// are this host's state and record failed attempts too.
	std::set<std::string> storeFiles()
	{
		std::set<std::string> files;
		for (auto &e : fs::recursive_directory_iterator(storeDir_))
			if (e.is_regular_file() && e.path().filename() != "lock" &&
			    !e.path().filename().string().starts_with("catalog.sqlite") &&
			    e.path().string().find("/chunk-map/") == std::string::npos)
				files.insert(e.path().string() + ":" + std::to_string(e.file_size()));
		return files;
	}

	std::set<std::string> workDirs()
	{
		std::set<std::string> dirs;
		for (auto &e : fs::directory_iterator(workRoot()))
			if (e.path().filename().string().rfind("virtsnap-", 0) == 0)
				dirs.insert(e.path().string());
		return dirs;
	}

	std::string reference_, disk_;
};

TEST_F(SnapshotTest, FullThenIncrementalRestoreBitExact)
{
	Json full = snapshot({"--description", "first", "--tag", "env=test"});
	std::string ref1 = saveReference("ref1.raw");
	std::string s1 = full.getString("SnapshotId").value_or("");
	EXPECT_EQ(full.getBool("Encrypted"), false) << "not a LUKS image, not marked";
	EXPECT_FALSE(full.has("KmsKeyId"));
	EXPECT_EQ(full.getString("CaptureMode"), "full");
	EXPECT_EQ(full.getString("State"), "completed");
	EXPECT_EQ(full.getString("Description"), "first");
	EXPECT_EQ(full.get("Tags").at(0).getString("Key"), "env");
	EXPECT_EQ(bitmaps(), std::set<std::string>{s1});

	// Scattered changes, some unaligned to the 64 KiB grid, one inside the
	// never-written region and one zeroing random data.
	std::mt19937_64 rng(7);
	for (int i = 0; i < 12; i++)
		write((rng() % (kDiskSize / 4096 - 16)) * 4096, 4096 * (1 + rng() % 8), uint8_t(0x10 + i));
	write(40 * kMiB + 123 * 512, 70000, 0xee);
	write(kMiB, 64 * 1024, 0x00);

	Json incr = snapshot();
	std::string s2 = incr.getString("SnapshotId").value_or("");
	std::string ref2 = saveReference("ref2.raw");
	EXPECT_EQ(incr.getString("CaptureMode"), "incremental");
	EXPECT_EQ(incr.getString("ParentSnapshotId"), s1);
	EXPECT_EQ(incr.getString("VolumeId"), full.getString("VolumeId"));
	// The parent's bitmap went once the child was durable.
	EXPECT_EQ(bitmaps(), std::set<std::string>{s2});

	int64_t fullAdded = full.getInt("BytesAdded").value_or(0);
	int64_t incrAdded = incr.getInt("BytesAdded").value_or(0);
	int64_t incrRead = incr.getInt("BytesRead").value_or(0);
	EXPECT_GT(fullAdded, int64_t(16 * kMiB)); // the random part cannot shrink
	EXPECT_LT(incrAdded * 20, fullAdded) << "incremental added " << incrAdded << " of " << fullAdded;
	EXPECT_LE(incrRead, int64_t(14 * 3 * 64 * 1024)) << "incremental read more than the dirty chunks";

	expectRestoresTo(s1, ref1, "qcow2");
	expectRestoresTo(s2, ref2, "raw");
	expectRestoresTo(s2, ref2, "qcow2");
	EXPECT_EQ(workDirs(), std::set<std::string>{});
}

TEST_F(SnapshotTest, ThirdSnapshotAfterNoChangeAddsAlmostNothing)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	Json same = snapshot();
	EXPECT_EQ(same.getString("CaptureMode"), "incremental");
	EXPECT_EQ(same.getInt("BytesRead"), 0);
	EXPECT_EQ(same.getInt("BytesAdded"), 0); // no chunk, no page changed
	expectRestoresTo(same.getString("SnapshotId").value_or(""), reference_, "raw");
	(void)s1;
}

// A volume marked encrypted gives encrypted snapshots, which restore only
// with a passphrase; a key the store does not have is NotFoundException,
// and nothing turns an encrypted volume back. Marked with the default
// account's default key (the store's default domain), the next snapshot
// is still incremental: the same domain, the same chunk ids.
TEST_F(SnapshotTest, AVolumeMarkedEncryptedGivesEncryptedSnapshots)
{
	std::string volume = snapshot().getString("VolumeId").value_or("");
	CliResult unknown = cli({"modify-volume", "--volume-id", volume, "--encrypted", "true", "--kms-key-id", "k1"});
	EXPECT_NE(unknown.status, 0);
	EXPECT_NE(unknown.err.find("NotFoundException"), std::string::npos) << unknown.err;
	CliResult marked = cli({"modify-volume", "--volume-id", volume, "--encrypted", "true"});
	ASSERT_EQ(marked.status, 0) << marked.err;
	EXPECT_EQ(marked.json().getBool("Encrypted"), true) << marked.out;
	std::string key = marked.json().getString("KmsKeyId").value_or("");
	EXPECT_EQ(key.size(), 16u) << marked.out;
	CliResult back = cli({"modify-volume", "--volume-id", volume, "--encrypted", "false"});
	EXPECT_NE(back.status, 0);
	EXPECT_NE(back.err.find("InvalidParameterValue"), std::string::npos) << back.err;

	Json s2 = snapshot();
	EXPECT_EQ(s2.getBool("Encrypted"), true);
	EXPECT_EQ(s2.getString("KmsKeyId"), key);
	EXPECT_EQ(s2.getString("CaptureMode"), "incremental") << "the default key is the default domain";
	std::string id = s2.getString("SnapshotId").value_or("");
	CliResult listed = cli({"describe-snapshots", "--filter", "Name=encrypted,Values=true"});
	ASSERT_EQ(listed.status, 0) << listed.err;
	ASSERT_EQ(listed.json().get("Snapshots").size(), 1u) << listed.out;
	EXPECT_EQ(listed.json().get("Snapshots").at(0).getString("SnapshotId"), id);
	std::string target = tmp_.file("plain.qcow2");
	CliResult refused = cli({"create-volume", "--snapshot-id", id, "--target", target});
	EXPECT_NE(refused.status, 0);
	EXPECT_NE(refused.err.find("--encryption-secret-file"), std::string::npos) << refused.err;
	EXPECT_FALSE(fs::exists(target));
}

TEST_F(SnapshotTest, DeletingTheFirstLeavesTheSecondRestorable)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	write(3 * kMiB, 128 * 1024, 0x42);
	std::string s2 = snapshot().getString("SnapshotId").value_or("");
	std::string ref2 = saveReference("ref2.raw");

	CliResult del = cli({"delete-snapshot", "--snapshot-id", s1});
	ASSERT_EQ(del.status, 0) << del.err;
	CliResult gone = cli({"describe-snapshots", "--snapshot-id", s1});
	EXPECT_EQ(gone.status, 1);
	EXPECT_NE(gone.err.find("InvalidSnapshot.NotFound"), std::string::npos) << gone.err;
	expectRestoresTo(s2, ref2, "raw");

	// And the chain goes on from the survivor.
	write(5 * kMiB, 4096, 0x43);
	Json s3 = snapshot();
	EXPECT_EQ(s3.getString("CaptureMode"), "incremental");
	EXPECT_EQ(s3.getString("ParentSnapshotId"), s2);
	expectRestoresTo(s3.getString("SnapshotId").value_or(""), reference_, "raw");
}

TEST_F(SnapshotTest, FlippedByteInAPackFailsRestoreLoudly)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	std::string pack;
	for (auto &e : fs::recursive_directory_iterator(storeDir_ + "/packs"))
		if (e.path().extension() == ".pack" && (pack.empty() || e.file_size() > fs::file_size(pack)))
			pack = e.path().string();
	ASSERT_FALSE(pack.empty());
	// The middle of the largest pack is inside some chunk's ciphertext.
	int fd = ::open(pack.c_str(), O_RDWR);
	off_t middle = off_t(fs::file_size(pack) / 2);
	uint8_t b;
	ASSERT_EQ(::pread(fd, &b, 1, middle), 1);
	b ^= 0x01;
	ASSERT_EQ(::pwrite(fd, &b, 1, middle), 1);
	::close(fd);

	std::string target = tmp_.file("corrupt.raw");
	CliResult r = cli({"create-volume", "--snapshot-id", s1, "--target", target, "--format", "raw"});
	EXPECT_EQ(r.status, 1);
	EXPECT_NE(r.err.find("StoreCorrupted"), std::string::npos) << r.err;
	EXPECT_NE(r.err.find("authentication failed"), std::string::npos) << r.err;
	EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	EXPECT_FALSE(fs::exists(target));
	for (auto &e : fs::directory_iterator(tmp_.path()))
		EXPECT_EQ(e.path().filename().string().find("corrupt.raw"), std::string::npos) << e.path();
}

TEST_F(SnapshotTest, WrongKeyIsRefusedAndTouchesNothing)
{
	snapshot();
	std::string otherKey = tmp_.file("other/store.key");
	CliResult other = runVirtsnap({"--store", tmp_.file("other-store"), "--key-file", otherKey, "init"});
	ASSERT_EQ(other.status, 0) << other.err;
	std::string keyText;
	{
		std::ifstream in(otherKey);
		std::getline(in, keyText);
	}

	auto filesBefore = storeFiles();
	QemuResidue residueBefore = residue();
	for (const std::vector<std::string> &args :
	     {std::vector<std::string>{"describe-snapshots"},
	      std::vector<std::string>{"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda", "--wait"}}) {
		CliResult r = cli(args, "", otherKey);
		EXPECT_EQ(r.status, 1) << args[0];
		EXPECT_NE(r.err.find("WrongKey"), std::string::npos) << r.err;
		EXPECT_EQ(r.err.find(keyText.substr(16)), std::string::npos) << "key material in the message";
		EXPECT_TRUE(r.out.empty());
	}
	EXPECT_EQ(storeFiles(), filesBefore);
	EXPECT_EQ(residue(), residueBefore);
}

TEST_F(SnapshotTest, BadInputGetsOneLineAndLeavesNoTrace)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	auto filesBefore = storeFiles();
	QemuResidue residueBefore = residue();

	struct Case {
		std::vector<std::string> args;
		std::string code;
		std::string mentions;
	};
	std::vector<Case> cases = {
		{{"create-snapshot", "--qmp-socket", tmp_.file("nope.sock"), "--disk", "vda", "--wait"}, "HypervisorError",
		 "nope.sock"},
		{{"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vdz", "--wait"}, "InvalidDisk.NotFound",
		 "vda"},
		{{"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--wait"}, "MissingParameter", "--disk"},
		{{"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda", "--tag", "novalue", "--wait"},
		 "InvalidParameterValue", "novalue"},
		{{"describe-snapshots", "--snapshot-id", "snap-XYZ"}, "InvalidSnapshotID.Malformed", "snap-XYZ"},
		{{"delete-snapshot", "--snapshot-id", "snap-00000000000000000"}, "InvalidSnapshot.NotFound",
		 "snap-00000000000000000"},
		{{"create-volume", "--snapshot-id", s1, "--target", tmp_.file("x.img"), "--format", "vmdk"},
		 "InvalidParameterValue", "vmdk"},
		{{"create-volume", "--snapshot-id", s1, "--target", reference_}, "TargetExists", reference_},
		{{"create-volume", "--snapshot-id", s1, "--target", tmp_.file("no/such/dir/x.img")},
		 "InvalidParameterValue", "does not exist"},
	};
	for (const Case &c : cases) {
		CliResult r = cli(c.args);
		EXPECT_NE(r.status, 0) << c.args[0];
		EXPECT_NE(r.err.find(c.code), std::string::npos) << r.err;
		EXPECT_NE(r.err.find(c.mentions), std::string::npos) << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	}
	CliResult noStore = runVirtsnap({"--store", tmp_.file("empty"), "--key-file", keyFile_, "describe-snapshots"},
					{"VIRTSNAP_SOCKET=" + tmp_.file("no-daemon.sock")});
	EXPECT_EQ(noStore.status, 1);
	EXPECT_NE(noStore.err.find("StoreNotInitialized"), std::string::npos) << noStore.err;

	EXPECT_EQ(storeFiles(), filesBefore);
	EXPECT_EQ(residue(), residueBefore);
	EXPECT_EQ(workDirs(), std::set<std::string>{});
}

TEST_F(SnapshotTest, FailureAfterTheTransactionDropsTheNewBitmapAndKeepsTheOld)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	write(2 * kMiB, 64 * 1024, 0x77);
	// An NBD server someone else started makes ours fail after the point in
	// time is fixed: everything from the transaction on must be undone.
	Json addr = Json::object();
	Json data = Json::object();
	data.set("path", Json::string(tmp_.file("foreign.nbd")));
	addr.set("type", Json::string("unix"));
	addr.set("data", data);
	Json args = Json::object();
	args.set("addr", addr);
	ASSERT_TRUE(vm_->control().execute("nbd-server-start", args));
	QemuResidue residueBefore = residue();
	auto filesBefore = storeFiles();

	CliResult r = cli({"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda", "--wait"});
	EXPECT_EQ(r.status, 1);
	EXPECT_NE(r.err.find("HypervisorError"), std::string::npos) << r.err;
	EXPECT_EQ(residue(), residueBefore);
	EXPECT_EQ(bitmaps(), std::set<std::string>{s1});
	EXPECT_EQ(storeFiles(), filesBefore);
	EXPECT_EQ(workDirs(), std::set<std::string>{});

	// The old bitmap still covers the write: the next one is incremental
	// and correct.
	ASSERT_TRUE(vm_->control().execute("nbd-server-stop"));
	Json next = snapshot();
	EXPECT_EQ(next.getString("CaptureMode"), "incremental");
	expectRestoresTo(next.getString("SnapshotId").value_or(""), reference_, "raw");
}

TEST_F(SnapshotTest, MissingBitmapMeansAFullReadThatSaysWhy)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	Json args = Json::object();
	args.set("node", Json::string("fmt-vda"));
	args.set("name", Json::string(s1));
	ASSERT_TRUE(vm_->control().execute("block-dirty-bitmap-remove", args));
	write(9 * kMiB, 4096, 0x99);

	Json s2 = snapshot();
	EXPECT_EQ(s2.getString("CaptureMode"), "full");
	EXPECT_NE(s2.getString("CaptureReason").value_or("").find("missing"), std::string::npos);
	// Dedup: the full read stores only the changed chunk and the pages.
	EXPECT_LT(s2.getInt("BytesAdded").value_or(0), int64_t(kMiB));
	expectRestoresTo(s2.getString("SnapshotId").value_or(""), reference_, "raw");
}

TEST_F(SnapshotTest, BitmapSurvivesACleanRestartAndACrashMakesItInconsistent)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	// QEMU writes persistent bitmaps into the qcow2 file when it closes it.
	vm_.reset();
	startQemu("qcow2");
	ASSERT_EQ(bitmaps(), std::set<std::string>{s1});
	write(11 * kMiB, 8192, 0x55);
	Json s2 = snapshot();
	EXPECT_EQ(s2.getString("CaptureMode"), "incremental");
	expectRestoresTo(s2.getString("SnapshotId").value_or(""), reference_, "raw");

	// Reopened, the image marks its bitmaps in use; dying now leaves them
	// inconsistent, and they cannot be trusted.
	vm_.reset();
	startQemu("qcow2");
	write(12 * kMiB, 8192, 0x56);
	vm_->kill(SIGKILL);
	vm_.reset();
	startQemu("qcow2");
	ASSERT_EQ(bitmaps(), std::set<std::string>{s2.getString("SnapshotId").value_or("")});

	Json s3 = snapshot();
	EXPECT_EQ(s3.getString("CaptureMode"), "full");
	EXPECT_NE(s3.getString("CaptureReason").value_or("").find("inconsistent"), std::string::npos)
		<< s3.getString("CaptureReason").value_or("");
	expectRestoresTo(s3.getString("SnapshotId").value_or(""), reference_, "raw");
	// The unusable bitmap is gone; the new one tracks from here.
	EXPECT_EQ(bitmaps(), std::set<std::string>{s3.getString("SnapshotId").value_or("")});
}

TEST_F(SnapshotTest, AFullDiskIsNamedAndLeavesNothingBehind)
{
	// A real filesystem that fills up: 12 MiB of tmpfs for a snapshot
	// that needs more than 16 MiB of random data, plus its pages.
	std::string small = tmp_.file("small");
	fs::create_directories(small);
	std::string out;
	if (runCommand({"mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", small}, &out) != 0) {
		if (inCi())
			FAIL() << "cannot mount a tmpfs for the full-disk test: " << out;
		GTEST_SKIP() << "cannot mount a tmpfs (not root?): " << out;
	}
	struct Unmount {
		std::string path;
		~Unmount() { runCommand({"umount", "-l", path}); }
	} unmount{small};
	std::string store = small + "/store";
	CliResult init = runVirtsnap({"--store", store, "--key-file", keyFile_, "init"});
	ASSERT_EQ(init.status, 0) << init.err;
	QemuResidue residueBefore = residue();

	CliResult r = runVirtsnap({"--store", store, "--key-file", keyFile_, "create-snapshot", "--qmp-socket",
				   vm_->qmpSocket(), "--disk", "vda", "--wait"},
				  {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + tmp_.file("no-daemon.sock")});
	EXPECT_EQ(r.status, 1);
	EXPECT_NE(r.err.find("InsufficientStorage"), std::string::npos) << r.err;
	EXPECT_NE(r.err.find("No space left"), std::string::npos) << r.err;
	EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	// The new bitmap went, nothing else of the capture stayed, and the
	// store holds no pack, no manifest and no temporary file.
	EXPECT_EQ(residue(), residueBefore);
	for (auto &e : fs::recursive_directory_iterator(store)) {
		std::string name = e.path().filename().string();
		EXPECT_FALSE(name.ends_with(".pack") || name.ends_with(".manifest") ||
			     name.find(".tmp-") != std::string::npos)
			<< e.path();
	}
	EXPECT_EQ(workDirs(), std::set<std::string>{});
}

// A QEMU that stopped answering (SIGSTOP: the whole process, as a hung one)
// fails a create within [hypervisor] timeout, in one line that says so,
// and nothing of the attempt stays. Resumed, it snapshots as before.
TEST_F(SnapshotTest, AStoppedQemuFailsACreateWithinTheTimeoutAndLeavesNothing)
{
	std::string config = tmp_.file("virtsnap.conf");
	std::ofstream(config) << "[hypervisor]\ntimeout = 2\n";
	QemuResidue residueBefore = residue();
	auto filesBefore = storeFiles();
	std::vector<std::string> create{"--config", config, "create-snapshot", "--qmp-socket", vm_->qmpSocket(),
					"--disk", "vda", "--wait"};
	std::chrono::milliseconds took;
	CliResult r = cliWhileStopped(vm_->pid(), create, &took);
	EXPECT_EQ(r.status, 1);
	EXPECT_NE(r.err.find("HypervisorError"), std::string::npos) << r.err;
	EXPECT_NE(r.err.find(vm_->qmpSocket()), std::string::npos) << r.err;
	EXPECT_NE(r.err.find("within 2000 ms"), std::string::npos) << r.err;
	EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	EXPECT_LT(took, std::chrono::seconds(10));
	EXPECT_EQ(residue(), residueBefore);
	EXPECT_EQ(storeFiles(), filesBefore);
	EXPECT_EQ(workDirs(), std::set<std::string>{});

	CliResult again = cli(create);
	ASSERT_EQ(again.status, 0) << again.err;
	expectRestoresTo(again.json().getString("SnapshotId").value_or(""), reference_, "raw");
}

// A capture hands its cleanup record over before it changes the instance,
// and the record names all it makes: what recovery removes after a process
// died mid-capture, before its job was otherwise recorded.
TEST_F(SnapshotTest, TheCleanupRecordComesBeforeTheCaptureChangesAnything)
{
	QemuResidue clean = residue();
	hypervisor::Target target{vm_->qmpSocket(), "", ""};
	auto driver = hypervisor::connectDriver(target, workRoot());
	ASSERT_TRUE(driver) << driver.error().toString();
	fs::path scratch = workRoot() + "/virtsnap-unit";
	fs::create_directories(scratch);
	hypervisor::CaptureSpec spec{{{"vda", "snap-0123456789abcdef0", "", 65536, true, {}}}, scratch, nullptr, {}, {}};

	// A caller that cannot record it stops the capture before any change.
	spec.beforeChanges = [](const std::string &) -> Result<void> { return fail(errc::kIo, "disk full"); };
	auto refused = (*driver)->capture(spec);
	ASSERT_FALSE(refused);
	EXPECT_NE(refused.error().message.find("disk full"), std::string::npos);
	EXPECT_EQ(residue(), clean);

	std::string record;
	std::optional<QemuResidue> atRecord;
	spec.beforeChanges = [&](const std::string &r) -> Result<void> {
		record = r;
		atRecord = residue();
		return {};
	};
	auto cap = (*driver)->capture(spec);
	ASSERT_TRUE(cap) << cap.error().toString();
	ASSERT_TRUE(atRecord);
	EXPECT_EQ(*atRecord, clean) << "the record came after a change";
	EXPECT_NE(residue(), clean);
	// What recovery does with the record alone, as if the capture's
	// process had died here (QEMU takes one monitor client, so through the
	// same driver): all the capture made in QEMU goes, and its scratch file.
	(*driver)->removeLeftovers(record);
	QemuResidue left = residue();
	EXPECT_EQ(left.nodes, clean.nodes);
	EXPECT_EQ(left.jobs, clean.jobs);
	EXPECT_EQ(left.exports, clean.exports);
	EXPECT_EQ(left.bitmaps, clean.bitmaps);
	for (const std::string &f : left.files)
		EXPECT_EQ(f.find(".qcow2"), std::string::npos) << f << " is left";
	cap->reset();
	EXPECT_EQ(residue(), clean);
}

class RawSnapshotTest : public SnapshotTest
{
protected:
	std::string diskFormat() const override { return "raw"; }
};

TEST_F(RawSnapshotTest, RawDisksAreIncrementalWithinOneQemuRun)
{
	Json s1 = snapshot();
	write(7 * kMiB, 64 * 1024, 0x31);
	Json s2 = snapshot();
	EXPECT_EQ(s2.getString("CaptureMode"), "incremental");
	expectRestoresTo(s2.getString("SnapshotId").value_or(""), reference_, "raw");
	auto blocks = vm_->control().execute("query-block");
	ASSERT_TRUE(blocks);
	Json bm = blocks->at(0).get("inserted").get("dirty-bitmaps").at(0);
	EXPECT_EQ(bm.getBool("persistent"), false); // raw cannot keep them
}


// The EBS direct APIs' read side against the reference file: which 512 KiB
// blocks hold data and which changed are worked out from the reference's
// bytes, and checksums with OpenSSL here, never by virtsnap's code.
class SnapshotBlocksTest : public SnapshotTest
{
protected:
	static constexpr uint64_t kBlock = 512 * 1024;

	Bytes readBlock(const std::string &file, uint64_t block)
	{
		Bytes out(kBlock, 0);
		int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
		EXPECT_GE(fd, 0) << file;
		EXPECT_EQ(::pread(fd, out.data(), kBlock, off_t(block * kBlock)), ssize_t(kBlock)) << file;
		::close(fd);
		return out;
	}

	static bool allZero(const Bytes &b)
	{
		return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
	}

	std::set<uint64_t> blocksWithData(const std::string &file)
	{
		std::set<uint64_t> out;
		for (uint64_t b = 0; b < kDiskSize / kBlock; b++)
			if (!allZero(readBlock(file, b)))
				out.insert(b);
		return out;
	}

	static std::string sha256Base64(const Bytes &data)
	{
		unsigned char digest[EVP_MAX_MD_SIZE];
		unsigned int len = 0;
		EXPECT_EQ(EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr), 1);
		std::string out(4 * ((len + 2) / 3) + 1, '\0');
		out.resize(size_t(EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), digest, int(len))));
		return out;
	}

	// Every page of list-snapshot-blocks: block index -> token.
	std::map<uint64_t, std::string> listBlocks(const std::string &id, const std::string &socket = "")
	{
		std::map<uint64_t, std::string> out;
		std::string next;
		for (int pages = 0; pages < 100; pages++) {
			std::vector<std::string> args = {"list-snapshot-blocks", "--snapshot-id", id, "--max-results", "100"};
			if (!next.empty())
				args.insert(args.end(), {"--next-token", next});
			CliResult r = cli(args, socket);
			EXPECT_EQ(r.status, 0) << r.err;
			Json doc = r.json();
			EXPECT_EQ(doc.getInt("BlockSize"), int64_t(kBlock));
			EXPECT_EQ(doc.getInt("VolumeSize"), 1); // GiB, rounded up
			EXPECT_TRUE(doc.has("ExpiryTime"));
			Json blocks = doc.get("Blocks");
			for (size_t i = 0; i < blocks.size(); i++)
				out[uint64_t(blocks.at(i).getInt("BlockIndex").value_or(-1))] =
					blocks.at(i).getString("BlockToken").value_or("");
			next = doc.getString("NextToken").value_or("");
			if (next.empty())
				return out;
			EXPECT_EQ(blocks.size(), 100u);
		}
		ADD_FAILURE() << "list-snapshot-blocks never ended";
		return out;
	}

	// get-snapshot-block: its reply, and the file's bytes in *data.
	CliResult getBlock(const std::string &id, uint64_t block, const std::string &token, Bytes *data = nullptr,
			   const std::string &socket = "")
	{
		std::string file = tmp_.file("block-" + id + "-" + std::to_string(block));
		fs::remove(file);
		CliResult r = cli({"get-snapshot-block", "--snapshot-id", id, "--block-index", std::to_string(block),
				   "--block-token", token, "--output-file", file},
				  socket);
		if (data && r.status == 0) {
			auto bytes = virtsnap::readFile(file);
			EXPECT_TRUE(bytes) << file;
			*data = bytes.value_or(Bytes());
			EXPECT_EQ(fileMode(file) & 0777, 0600u) << file;
		}
		return r;
	}

	// Reads every block of `tokens` and checks it against `reference`.
	void expectBlocksAre(const std::string &id, const std::map<uint64_t, std::string> &tokens,
			     const std::string &reference)
	{
		for (const auto &[block, token] : tokens) {
			Bytes data;
			CliResult r = getBlock(id, block, token, &data);
			ASSERT_EQ(r.status, 0) << r.err;
			Bytes expected = readBlock(reference, block);
			EXPECT_EQ(r.json().getInt("DataLength"), int64_t(kBlock));
			EXPECT_EQ(r.json().getString("ChecksumAlgorithm"), "SHA256");
			EXPECT_EQ(r.json().getString("Checksum"), sha256Base64(expected)) << "block " << block;
			EXPECT_TRUE(data == expected) << "block " << block;
		}
	}

	void expectOneLineError(const CliResult &r, const std::string &code, const std::string &mentions)
	{
		EXPECT_NE(r.status, 0);
		EXPECT_NE(r.err.find(code), std::string::npos) << r.err;
		EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	}

	// A token for block `block` of `id` expiring at `expiry`, minted with
	// the store's own key, as a listing then would have: what a token
	// that was listed and kept for more than 7 days is.
	std::string mintToken(const std::string &id, uint64_t block, engine::TimePoint expiry)
	{
		auto store = store::Store::open(storeDir_, keyFile_);
		EXPECT_TRUE(store) << store.error().toString();
		if (!store)
			return "";
		auto codec = (*store)->newCodec();
		auto m = (*store)->getManifest(id);
		EXPECT_TRUE(m);
		auto index = store::SnapshotIndex::load(**store, *codec, *m);
		EXPECT_TRUE(index);
		auto identity = engine::blockIdentity(*index, block);
		EXPECT_TRUE(identity);
		return engine::BlockTokens((*store)->domain()).mint(id, block, *identity, expiry);
	}
};

TEST_F(SnapshotBlocksTest, BlocksAndChangedBlocksMatchTheReference)
{
	// Data well into the half that was never written, across a block edge.
	write(32 * kMiB, 24 * kMiB, 0x5a);
	write(60 * kMiB - 100, 200, 0x33);
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	std::string ref1 = saveReference("ref1.raw");

	auto blocks1 = listBlocks(s1);
	auto expected1 = blocksWithData(ref1);
	ASSERT_GT(expected1.size(), 100u); // so that listing takes two pages
	std::set<uint64_t> listed1;
	for (const auto &[b, t] : blocks1)
		listed1.insert(b);
	EXPECT_EQ(listed1, expected1);
	ASSERT_NO_FATAL_FAILURE(expectBlocksAre(s1, blocks1, ref1));

	write(3 * kMiB + 100, 5000, 0x42);    // one block
	write(8 * kMiB, kBlock, 0x00);         // a block of data zeroed
	write(62 * kMiB + kBlock - 10, 20, 0x43); // two blocks, from zeros
	std::string s2 = snapshot().getString("SnapshotId").value_or("");
	std::string ref2 = saveReference("ref2.raw");

	std::set<uint64_t> rewritten;
	for (uint64_t b = 0; b < kDiskSize / kBlock; b++)
		if (readBlock(ref1, b) != readBlock(ref2, b))
			rewritten.insert(b);
	ASSERT_EQ(rewritten.size(), 4u);
	for (auto [first, second] : {std::pair{s1, s2}, std::pair{s2, s1}}) {
		CliResult r = cli({"list-changed-blocks", "--first-snapshot-id", first, "--second-snapshot-id", second});
		ASSERT_EQ(r.status, 0) << r.err;
		EXPECT_FALSE(r.json().has("NextToken"));
		Json changed = r.json().get("ChangedBlocks");
		std::set<uint64_t> got;
		for (size_t i = 0; i < changed.size(); i++) {
			Json c = changed.at(i);
			uint64_t b = uint64_t(c.getInt("BlockIndex").value_or(-1));
			got.insert(b);
			const std::string &firstRef = first == s1 ? ref1 : ref2, &secondRef = first == s1 ? ref2 : ref1;
			EXPECT_EQ(c.has("FirstBlockToken"), !allZero(readBlock(firstRef, b))) << b;
			EXPECT_EQ(c.has("SecondBlockToken"), !allZero(readBlock(secondRef, b))) << b;
			if (c.has("SecondBlockToken")) {
				ASSERT_NO_FATAL_FAILURE(
					expectBlocksAre(second, {{b, c.getString("SecondBlockToken").value_or("")}}, secondRef));
			}
			if (c.has("FirstBlockToken")) {
				ASSERT_NO_FATAL_FAILURE(
					expectBlocksAre(first, {{b, c.getString("FirstBlockToken").value_or("")}}, firstRef));
			}
		}
		EXPECT_EQ(got, rewritten);
	}
	// Without a first snapshot: every block of the second that holds data.
	CliResult all = cli({"list-changed-blocks", "--second-snapshot-id", s2, "--max-results", "10000"});
	ASSERT_EQ(all.status, 0) << all.err;
	EXPECT_EQ(all.json().get("ChangedBlocks").size(), blocksWithData(ref2).size());

	// Through the daemon: the same blocks, the same bytes.
	std::string socket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(socket));
	ASSERT_TRUE(daemon.start());
	auto viaDaemon = listBlocks(s2, socket);
	EXPECT_EQ(viaDaemon.size(), blocksWithData(ref2).size());
	Bytes data;
	CliResult got = getBlock(s2, 6, viaDaemon.at(6), &data, socket);
	ASSERT_EQ(got.status, 0) << got.err;
	EXPECT_TRUE(data == readBlock(ref2, 6));
}

TEST_F(SnapshotBlocksTest, BadTokensIdsAndIndexesAreOneLineErrors)
{
	std::string s1 = snapshot().getString("SnapshotId").value_or("");
	auto blocks = listBlocks(s1);
	ASSERT_TRUE(blocks.contains(0) && blocks.contains(1));
	std::string token = blocks.at(0);
	ASSERT_EQ(getBlock(s1, 0, token).status, 0);

	std::string forged = token;
	forged[20] = forged[20] == 'A' ? 'B' : 'A';
	expectOneLineError(getBlock(s1, 0, forged), "InvalidParameterValue", "not valid");
	expectOneLineError(getBlock(s1, 1, token), "InvalidParameterValue", "not valid");
	// The expiry (bytes 1 to 8) moved a year on: the MAC no longer fits.
	auto raw = *crypto::fromBase64(token);
	putLe64(raw.data() + 1, getLe64(raw.data() + 1) + 365 * 86400);
	expectOneLineError(getBlock(s1, 0, crypto::base64(raw)), "InvalidParameterValue", "not valid");
	// Listed eight days ago: expired a day ago.
	auto dayAgo = std::chrono::system_clock::now() - std::chrono::hours(24);
	std::string expired = mintToken(s1, 0, dayAgo);
	expectOneLineError(getBlock(s1, 0, expired), "InvalidParameterValue", "expired");
	// The same mint, unexpired, is accepted: the refusal was the expiry.
	ASSERT_EQ(getBlock(s1, 0, mintToken(s1, 0, dayAgo + std::chrono::hours(48))).status, 0);

	expectOneLineError(getBlock("snap-00000000000000000", 0, token), "InvalidSnapshot.NotFound",
			   "snap-00000000000000000");
	expectOneLineError(getBlock("snap-XYZ", 0, token), "InvalidSnapshotID.Malformed", "snap-XYZ");
	expectOneLineError(getBlock(s1, kDiskSize / kBlock, token), "InvalidParameterValue", "out of range");
	expectOneLineError(cli({"list-snapshot-blocks", "--snapshot-id", "snap-00000000000000000"}),
			   "InvalidSnapshot.NotFound", "snap-00000000000000000");
	expectOneLineError(cli({"list-snapshot-blocks", "--snapshot-id", s1, "--starting-block-index", "128"}),
			   "InvalidParameterValue", "out of range");
	expectOneLineError(cli({"list-snapshot-blocks", "--snapshot-id", s1, "--max-results", "99"}),
			   "InvalidParameterValue", "100 to 10000");
	expectOneLineError(cli({"list-changed-blocks", "--first-snapshot-id", "snap-00000000000000000",
				"--second-snapshot-id", s1}),
			   "InvalidSnapshot.NotFound", "snap-00000000000000000");

	// Snapshots the catalog knows as pending or failed (written here as a
	// create would leave them): not readable, whatever the store holds.
	{
		auto catalog = catalog::Catalog::open(fs::path(storeDir_) / "catalog.sqlite");
		ASSERT_TRUE(catalog) << catalog.error().toString();
		for (auto [id, state] : {std::pair{"snap-00000000000000123", SnapshotState::Error},
					 std::pair{"snap-00000000000000124", SnapshotState::Pending}}) {
			catalog::SnapshotRow row;
			row.snapshotId = id;
			row.volumeId = "vol-00000000000000001";
			row.state = state;
			row.startTime = isoTimeNow();
			auto put = (*catalog)->putSnapshot(row);
			ASSERT_TRUE(put) << put.error().toString();
		}
	}
	for (std::string id : {"snap-00000000000000123", "snap-00000000000000124"}) {
		expectOneLineError(cli({"list-snapshot-blocks", "--snapshot-id", id}), "IncorrectState", id);
		expectOneLineError(getBlock(id, 0, token), "IncorrectState", id);
		expectOneLineError(cli({"list-changed-blocks", "--first-snapshot-id", s1, "--second-snapshot-id", id}),
				   "IncorrectState", id);
	}
}

} // namespace
} // namespace virtsnap::test
