// Encrypted volumes end to end (issue 12): a LUKS qcow2 attached to a real
// QEMU through a `secret` object is snapshotted full and incremental, and
// each snapshot restores into a LUKS qcow2 that holds the guest's data, by
// qemu-img compare against a raw reference this test wrote itself, and no
// plaintext (a marker written into the disk is not in the file). A
// capture's scratch file, which receives the old data the guest overwrites
// while the capture is read, holds no plaintext either; and another
// account a shared encrypted snapshot is shared with must copy it first.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "cli_fixture.h"
#include "scratch_checks.h"
#include "hypervisor/target.h"
#include "tests/support/qemu_instance.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;

constexpr uint64_t kLuksDiskSize = 16 * kMiB;
constexpr const char *kLuksMarker = "virtsnap-luks-marker-5c1e0a7d";

std::string fileText(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	return std::string(std::istreambuf_iterator<char>(in), {});
}

class LuksTest : public QemuCliTest
{
protected:
	LuksTest() : QemuCliTest("vs-luks") {}

	void SetUp() override
	{
		REQUIRE_QEMU();
		secret_ = secretFile("secret", "luks test passphrase", 0600);
		// A short key derivation keeps each open of a LUKS image cheap.
		config_ = tmp_.file("virtsnap.conf");
		std::ofstream(config_) << "[restore]\nluks-iter-time = 10\n";
		reference_ = tmp_.file("reference.raw");
		std::ofstream(reference_).close();
		fs::resize_file(reference_, kLuksDiskSize);
		disk_ = tmp_.file("disk.qcow2");
		// qemu-img 7.2 fails its key derivation's timing at random
		// ("Unable to get accurate CPU usage"): virtsnap retries, so do we.
		std::string out;
		int status = 1;
		for (int attempt = 0; attempt < 5 && status != 0; attempt++)
			status = runCommand({"qemu-img", "create", "-q", "-f", "qcow2", "--object", secretObject(), "-o",
					     "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", disk_,
					     std::to_string(kLuksDiskSize)},
					    &out);
		ASSERT_EQ(status, 0) << out;
		QemuOptions opts;
		opts.name = "vs-luks";
		opts.objects = {secretObject()};
		opts.disks = {{.path = disk_, .format = "qcow2", .id = "vda", .formatOptions = "encrypt.format=luks,encrypt.key-secret=sec0"}};
		std::string error;
		vm_ = QemuInstance::start(opts, &error);
		ASSERT_TRUE(vm_) << error;
		CliResult init = run({"init"});
		ASSERT_EQ(init.status, 0) << init.err;
	}

	std::string secretFile(const std::string &name, const std::string &value, mode_t mode)
	{
		std::string path = tmp_.file(name);
		std::ofstream(path) << value;
		::chmod(path.c_str(), mode);
		return path;
	}

	std::string secretObject() const { return "secret,id=sec0,file=" + secret_ + ",format=raw"; }

	// In this process, or through the daemon at `socket`.
	CliResult run(std::vector<std::string> args, const std::string &socket = "")
	{
		args.insert(args.begin(), {"--config", config_});
		return cli(args, socket);
	}

	Json snapshot()
	{
		CliResult r = run({"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda", "--wait"});
		EXPECT_EQ(r.status, 0) << r.err;
		return r.json();
	}

	// The marker, over and over in 64 KiB at `offset`, as the guest writes
	// it (qemu-io through the device) and into the reference.
	void writeMarker(uint64_t offset)
	{
		std::string block;
		while (block.size() < 64 * 1024)
			block += kLuksMarker;
		block.resize(64 * 1024);
		std::string staged = tmp_.file("marker.bin");
		std::ofstream(staged, std::ios::binary) << block;
		std::string out;
		ASSERT_TRUE(vm_->qemuIo("vda", "write -s " + staged + " " + std::to_string(offset) + " 64k", &out)) << out;
		int fd = ::open(reference_.c_str(), O_WRONLY | O_CLOEXEC);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(::pwrite(fd, block.data(), block.size(), off_t(offset)), ssize_t(block.size()));
		::close(fd);
	}

	std::string saveReference(const std::string &name)
	{
		std::string path = tmp_.file(name);
		fs::copy_file(reference_, path);
		return path;
	}

	// The LUKS qcow2 `image`, opened with the secret, against the raw `expected`.
	::testing::AssertionResult sameLuksImage(const std::string &image, const std::string &expected)
	{
		std::string out;
		if (runCommand({"qemu-img", "compare", "--object", secretObject(), "--image-opts",
				"driver=qcow2,file.filename=" + image + ",encrypt.key-secret=sec0",
				"driver=raw,file.filename=" + expected},
			       &out) == 0)
			return ::testing::AssertionSuccess();
		return ::testing::AssertionFailure() << image << " differs from " << expected << ": " << out;
	}

	bool isLuks(const std::string &image)
	{
		std::string out;
		if (runCommand({"qemu-img", "info", "--output=json", image}, &out) != 0)
			return false;
		auto j = Json::parse(out);
		return j && j->getBool("encrypted") == true &&
		       j->get("format-specific").get("data").get("encrypt").getString("format") == "luks";
	}

	void expectRestoresEncrypted(const std::string &snapshotId, const std::string &expected,
				     const std::string &socket = "")
	{
		std::string target = tmp_.file(snapshotId + ".qcow2");
		CliResult r = run({"create-volume", "--snapshot-id", snapshotId, "--target", target,
				   "--encryption-secret-file", secret_},
				  socket);
		ASSERT_EQ(r.status, 0) << r.err;
		EXPECT_EQ(r.json().getBool("Encrypted"), true);
		EXPECT_TRUE(isLuks(target)) << target;
		EXPECT_TRUE(sameLuksImage(target, expected)) << snapshotId;
		EXPECT_EQ(fileText(target).find(kLuksMarker), std::string::npos) << target << " holds plaintext";
	}

	// The ids of vm_'s QOM objects (its `secret` objects among them).
	std::set<std::string> qomObjects()
	{
		Json a = Json::object();
		a.set("path", Json::string("/objects"));
		auto list = vm_->control().execute("qom-list", a);
		EXPECT_TRUE(list) << list.error().toString();
		std::set<std::string> ids;
		for (size_t i = 0; list && i < list->size(); i++)
			ids.insert(list->at(i).getString("name").value_or(""));
		return ids;
	}

	std::string secret_, config_, reference_, disk_;
};

TEST_F(LuksTest, SnapshotsRestoreIntoLuksImagesWithoutPlaintext)
{
	writeMarker(kMiB);
	mirrorWrite(*vm_, "vda", reference_, tmp_.file("random.bin"), 4 * kMiB, 256 * 1024, -1);
	// The test means something only if the marker is in the guest's data
	// and not in the encrypted image.
	ASSERT_NE(fileText(reference_).find(kLuksMarker), std::string::npos);
	ASSERT_EQ(fileText(disk_).find(kLuksMarker), std::string::npos);

	CliResult vols = run({"describe-volumes", "--qmp-socket", vm_->qmpSocket()});
	ASSERT_EQ(vols.status, 0) << vols.err;
	EXPECT_EQ(vols.json().get("Volumes").at(0).getBool("Encrypted"), true) << vols.out;

	Json full = snapshot();
	std::string s1 = full.getString("SnapshotId").value_or("");
	std::string ref1 = saveReference("ref1.raw");
	EXPECT_EQ(full.getBool("Encrypted"), true);
	EXPECT_EQ(full.getString("KmsKeyId").value_or("").size(), 16u) << "the store's key domain";

	writeMarker(9 * kMiB);
	mirrorWrite(*vm_, "vda", reference_, "", 2 * kMiB, 128 * 1024, 0x5a);
	Json incr = snapshot();
	std::string s2 = incr.getString("SnapshotId").value_or("");
	std::string ref2 = saveReference("ref2.raw");
	EXPECT_EQ(incr.getString("CaptureMode"), "incremental");
	EXPECT_EQ(incr.getBool("Encrypted"), true);
	EXPECT_LE(incr.getInt("BytesRead").value_or(-1), int64_t(4 * 64 * 1024)) << "the bitmap's changes only";

	// Without a passphrase, or with one others may read: one line, no file.
	std::string refused = tmp_.file("refused.qcow2");
	CliResult bare = run({"create-volume", "--snapshot-id", s1, "--target", refused});
	EXPECT_NE(bare.status, 0);
	EXPECT_NE(bare.err.find("InvalidParameterValue"), std::string::npos) << bare.err;
	EXPECT_NE(bare.err.find("--encryption-secret-file"), std::string::npos) << bare.err;
	EXPECT_EQ(std::count(bare.err.begin(), bare.err.end(), '\n'), 1) << bare.err;
	std::string open = secretFile("open-secret", "luks test passphrase", 0644);
	CliResult loose = run({"create-volume", "--snapshot-id", s1, "--target", refused, "--encryption-secret-file", open});
	EXPECT_NE(loose.status, 0);
	EXPECT_NE(loose.err.find("0600"), std::string::npos) << loose.err;
	EXPECT_FALSE(fs::exists(refused));
	// An instant restore's qcow2 would take plaintext: refused before it serves.
	CliResult instant = run({"create-volume", "--snapshot-id", s1, "--target", refused, "--instant"});
	EXPECT_NE(instant.status, 0);
	EXPECT_NE(instant.err.find("is encrypted"), std::string::npos) << instant.err;
	EXPECT_EQ(std::count(instant.err.begin(), instant.err.end(), '\n'), 1) << instant.err;
	EXPECT_FALSE(fs::exists(refused));

	expectRestoresEncrypted(s1, ref1);
	// virtsnapd reads the passphrase file as its caller, the same way.
	std::string socket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(socket, {"--config", config_}));
	ASSERT_TRUE(daemon.start());
	expectRestoresEncrypted(s2, ref2, socket);
	daemon.stop();
	for (auto &e : fs::recursive_directory_iterator(tmp_.path())) {
		bool ours = e.path().string().find("ref") != std::string::npos || e.path().filename() == "marker.bin";
		if (e.is_regular_file() && !ours) {
			EXPECT_EQ(fileText(e.path()).find(kLuksMarker), std::string::npos) << e.path() << " holds plaintext";
		}
	}
}

// While a capture is read, what the guest overwrites is first copied to the
// capture's scratch file: of an encrypted disk, that is the guest's
// decrypted data. It goes in encrypted, under a random key that dies with
// the capture; the export still reads the old data through it.
TEST_F(LuksTest, ACaptureScratchOfAnEncryptedDiskHoldsNoPlaintext)
{
	writeMarker(2 * kMiB);
	hypervisor::Target target{vm_->qmpSocket(), "", ""};
	auto driver = hypervisor::connectDriver(target, workRoot());
	ASSERT_TRUE(driver) << driver.error().toString();
	fs::path scratch = workRoot() + "/virtsnap-luks-scratch";
	fs::create_directories(scratch);
	hypervisor::CaptureSpec spec{{{"vda", "snap-0123456789abcdef0", "", 65536, true, {}}}, scratch, nullptr, {}, {}};
	std::string record;
	spec.beforeChanges = [&](const std::string &r) -> Result<void> {
		record = r;
		return {};
	};
	const std::set<std::string> objectsBefore = qomObjects();
	auto cap = (*driver)->capture(spec);
	ASSERT_TRUE(cap) << cap.error().toString();
	EXPECT_EQ(qomObjects().size(), objectsBefore.size() + 1) << "the scratch key";

	// The guest overwrites the marker during the transfer.
	std::string out;
	ASSERT_TRUE(vm_->qemuIo("vda", "write -P 0x33 2M 64k", &out)) << out;
	std::vector<fs::path> scratchFiles;
	for (auto &e : fs::directory_iterator(scratch))
		scratchFiles.push_back(e.path());
	ASSERT_EQ(scratchFiles.size(), 1u);
	const fs::path scratchFile = scratchFiles.front();
	// The point in time still holds the marker: it came from the scratch.
	ASSERT_NO_FATAL_FAILURE(
		expectEncryptedScratch(scratchFile, (*cap)->exports().at(0), kLuksMarker, tmp_.file("exported.raw")));

	// What recovery removes after a crash takes the key too; the capture's
	// own teardown then finds nothing left.
	(*driver)->removeLeftovers(record);
	EXPECT_EQ(qomObjects(), objectsBefore);
	EXPECT_FALSE(fs::exists(scratchFile));
	cap->reset();
	EXPECT_EQ(qomObjects(), objectsBefore);
}

// A snapshot of an encrypted volume shared with another account: it sees
// it, and a create-volume from it is refused, naming the copy it must make
// first (EBS requires the copy).
TEST_F(LuksTest, ASharedEncryptedSnapshotIsCopiedNotRestoredByItsRecipient)
{
	if (getuid() != 0)
		GTEST_SKIP() << "create-account is root's";
	const std::string other = "222222222222";
	CliResult made = run({"create-account", "--account-id", other, "--account-key-file", tmp_.file("other.key")});
	ASSERT_EQ(made.status, 0) << made.err;
	// Another account's describe shows the LUKS volume encrypted, with no
	// key yet, and fixes none: the first snapshot's account's key it gets.
	CliResult described = run({"describe-volumes", "--qmp-socket", vm_->qmpSocket(), "--account", other});
	ASSERT_EQ(described.status, 0) << described.err;
	EXPECT_EQ(described.json().get("Volumes").at(0).getBool("Encrypted"), true) << described.out;
	EXPECT_FALSE(described.json().get("Volumes").at(0).getString("KmsKeyId")) << described.out;
	writeMarker(kMiB);
	Json first = snapshot();
	const std::string snap = first.getString("SnapshotId").value_or("");
	ASSERT_FALSE(snap.empty());
	const std::string volume = first.getString("VolumeId").value_or("");
	const std::string volumeKey = first.getString("KmsKeyId").value_or("");
	ASSERT_EQ(volumeKey.size(), 16u) << first.dump();
	CliResult otherKeys = run({"describe-keys", "--account", other});
	ASSERT_EQ(otherKeys.status, 0) << otherKeys.err;
	EXPECT_EQ(otherKeys.out.find(volumeKey), std::string::npos) << "the describe gave the volume its key";

	// Without the volume's key, the other account neither re-keys the
	// volume (not even to a key of its own) nor snapshots it: one line
	// naming the key, nothing changed.
	CliResult ownKey = run({"create-key", "--account", other});
	ASSERT_EQ(ownKey.status, 0) << ownKey.err;
	const std::string otherKey = ownKey.json().get("KeyMetadata").getString("KeyId").value_or("");
	for (const std::vector<std::string> &args : std::vector<std::vector<std::string>>{
		     {"modify-volume", "--volume-id", volume, "--encrypted", "true"},
		     {"modify-volume", "--volume-id", volume, "--encrypted", "true", "--kms-key-id", otherKey},
		     {"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda", "--wait"}}) {
		std::vector<std::string> asOther = args;
		asOther.insert(asOther.end(), {"--account", other});
		CliResult refused = run(asOther);
		EXPECT_NE(refused.status, 0) << args[0] << ": " << refused.out;
		EXPECT_NE(refused.err.find("AccessDenied"), std::string::npos) << args[0] << ": " << refused.err;
		EXPECT_NE(refused.err.find(volumeKey), std::string::npos) << args[0] << ": " << refused.err;
		EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
	}
	CliResult after = run({"describe-volumes", "--volume-id", volume});
	ASSERT_EQ(after.status, 0) << after.err;
	EXPECT_EQ(after.json().get("Volumes").at(0).getString("KmsKeyId"), volumeKey) << after.out;
	CliResult snaps = run({"describe-snapshots"});
	ASSERT_EQ(snaps.status, 0) << snaps.err;
	EXPECT_EQ(snaps.json().get("Snapshots").size(), 1u) << snaps.out;
	CliResult shared = run({"modify-snapshot-attribute", "--snapshot-id", snap, "--attribute",
				"createVolumePermission", "--operation-type", "add", "--user-ids", other});
	ASSERT_EQ(shared.status, 0) << shared.err;

	CliResult seen = run({"describe-snapshots", "--snapshot-id", snap, "--account", other});
	ASSERT_EQ(seen.status, 0) << seen.err;
	EXPECT_EQ(seen.json().get("Snapshots").at(0).getBool("Encrypted"), true) << seen.out;
	// Even with a grant on its key, which it needs to read it at all.
	const std::string key = seen.json().get("Snapshots").at(0).getString("KmsKeyId").value_or("");
	CliResult granted = run({"create-grant", "--key-id", key, "--grantee-account", other});
	ASSERT_EQ(granted.status, 0) << granted.err;
	const std::string target = tmp_.file("recipient.qcow2");
	for (std::vector<std::string> restore :
	     {std::vector<std::string>{"create-volume", "--snapshot-id", snap, "--target", target,
				       "--encryption-secret-file", secret_},
	      std::vector<std::string>{"create-volume", "--snapshot-id", snap, "--target", target, "--instant"}}) {
		restore.insert(restore.end(), {"--account", other});
		CliResult refused = run(restore);
		EXPECT_NE(refused.status, 0) << refused.out;
		EXPECT_NE(refused.err.find("AccessDenied"), std::string::npos) << refused.err;
		EXPECT_NE(refused.err.find("copy-snapshot"), std::string::npos) << refused.err;
		EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
		EXPECT_FALSE(fs::exists(target));
	}
	// Its owner restores it as before.
	expectRestoresEncrypted(snap, reference_);
}

} // namespace
} // namespace virtsnap::test
