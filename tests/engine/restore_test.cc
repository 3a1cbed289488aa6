// create-volume's qcow2 path as virtsnapd runs it: after a thread acted as
// a caller (setfsuid: core/acting_as.h) the process is not dumpable, and
// under the systemd unit its children lack CAP_SYS_PTRACE, so they may
// not open /proc/OURPID/fd/N. The restore must still work, bit-exact: its
// helper programs open the files they were handed as /proc/self/fd/N.
//
// And a qcow2 restore of a volume past 16 TiB, which ext4 cannot hold as a
// raw file: written straight into the qcow2, sparse, bit-exact. And the
// product codes a restored file carries to the volume whatever disk
// attaches it next (engine/image_product_codes.h).
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include "core/process.h"
#include "core/product_code_mark.h"
#include "engine/image_product_codes.h"
#include "engine/qcow2_image_writer.h"
#include "engine/restore.h"
#include "tests/engine/child_processes.h"
#include "tests/engine/clocked_store.h"

namespace virtsnap::engine {
namespace {

using store::test::describe;

TEST_F(ClockedStoreTest, AQcow2RestoreNeedsNoLookIntoANonDumpableDaemon)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "needs root to drop CAP_SYS_PTRACE from the children";
	// For every child from here on, as virtsnapd's unit has it; and this
	// process not dumpable, as after any ActingAs.
	ASSERT_EQ(::prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0), 0) << std::strerror(errno);
	ASSERT_EQ(::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), 0);

	fs::path qcow = root_ / "restored.qcow2";
	auto restored = createVolume(*store_, {id_, qcow, "qcow2", {}, ""});
	ASSERT_TRUE(restored) << describe(restored);
	fs::path raw = root_ / "restored.raw";
	auto converted = runProgram({"qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow.string(), raw.string()});
	ASSERT_TRUE(converted) << describe(converted);
	std::ifstream in(raw, std::ios::binary);
	EXPECT_EQ(Bytes(std::istreambuf_iterator<char>(in), {}), disk(1));
}

// A file size limit far below the volume's, for one test: a raw file of the
// volume's size then fails as it does on ext4 past 16 TiB (EFBIG), on any
// file system the test runs on.
class FileSizeLimit
{
public:
	explicit FileSizeLimit(rlim_t bytes)
	{
		::getrlimit(RLIMIT_FSIZE, &saved_);
		// EFBIG rather than a signal that ends the test.
		oldHandler_ = std::signal(SIGXFSZ, SIG_IGN);
		rlimit limit = saved_;
		limit.rlim_cur = bytes;
		ok_ = ::setrlimit(RLIMIT_FSIZE, &limit) == 0;
	}
	~FileSizeLimit()
	{
		::setrlimit(RLIMIT_FSIZE, &saved_);
		std::signal(SIGXFSZ, oldHandler_);
	}
	bool ok() const { return ok_; }

private:
	rlimit saved_{};
	void (*oldHandler_)(int) = SIG_DFL;
	bool ok_ = false;
};

TEST_F(ClockedStoreTest, AQcow2RestorePast16TiBIsWrittenSparseWithoutARawImage)
{
	constexpr uint64_t kTiB = 1ull << 40;
	constexpr uint64_t kVolume = 17 * kTiB;
	// The first chunk, one at 10 TiB and the last: past 16 TiB too.
	const std::vector<uint64_t> slots{0, 10 * kTiB / kChunk, kVolume / kChunk - 1};
	const std::string id = "snap-0123456789abcdef1";
	fs::path reference = root_ / "reference.qcow2";
	ASSERT_TRUE(runProgram({"qemu-img", "create", "-q", "-f", "qcow2", reference.string(), std::to_string(kVolume)}));
	store::SnapshotIndex index(kVolume, kChunk);
	auto writer = store_->newWriter();
	for (uint64_t slot : slots) {
		Bytes chunk = store::test::randomData(kChunk, slot);
		auto c = writer->put(*codec_, chunk, store::ChunkType::Data);
		ASSERT_TRUE(c) << describe(c);
		index.set(slot, *c);
		// The reference is QEMU's own writing, not ours.
		fs::path part = root_ / "chunk.bin";
		std::ofstream(part, std::ios::binary).write(reinterpret_cast<const char *>(chunk.data()), kChunk);
		auto wrote = runProgram({"qemu-io", "-f", "qcow2", "-c",
					 "write -s " + part.string() + " " + std::to_string(slot * kChunk) + " " +
						 std::to_string(kChunk),
					 reference.string()});
		ASSERT_TRUE(wrote) << describe(wrote);
	}
	store::Manifest m = store::test::manifestFor(id, isoTimeNow());
	ASSERT_TRUE(index.save(*writer, *codec_, m));
	ASSERT_TRUE(writer->commit());
	ASSERT_TRUE(store_->putManifest(m));

	fs::path qcow = root_ / "restored.qcow2";
	{
		FileSizeLimit limit(1ull << 30);
		ASSERT_TRUE(limit.ok()) << std::strerror(errno);
		auto restored = createVolume(*store_, {id, qcow, "qcow2", {}, ""});
		ASSERT_TRUE(restored) << describe(restored);
	}
	auto same = runProgram({"qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", reference.string(), qcow.string()});
	EXPECT_TRUE(same) << describe(same);
	// Allocated: the data and qcow2's tables, not the volume's size.
	EXPECT_LT(fs::file_size(qcow), 16ull << 20);
	auto map = runProgram({"qemu-img", "map", "--output=json", "-f", "qcow2", qcow.string()});
	ASSERT_TRUE(map) << describe(map);
	size_t allocated = 0;
	for (size_t at = 0; (at = map->find("\"data\": true", at)) != std::string::npos; at++)
		allocated++;
	EXPECT_EQ(allocated, slots.size()) << *map;
	EXPECT_FALSE(fs::exists(root_ / "restored.qcow2.raw"));
}

// $PATH for one test: a directory of the test's own that has qemu-img and
// what the test puts there as qemu-nbd, or nothing.
class QemuNbdStandIn
{
public:
	QemuNbdStandIn(const fs::path &dir, const std::string &script) : saved_(std::getenv("PATH"))
	{
		fs::create_directories(dir);
		auto qemuImg = runProgram({"sh", "-c", "command -v qemu-img"});
		if (qemuImg)
			fs::create_symlink(lastLine(*qemuImg), dir / "qemu-img");
		if (!script.empty()) {
			std::ofstream(dir / "qemu-nbd") << "#!/bin/sh\n" << script << "\n";
			fs::permissions(dir / "qemu-nbd", fs::perms::owner_all);
		}
		::setenv("PATH", dir.c_str(), 1);
	}
	~QemuNbdStandIn() { ::setenv("PATH", saved_.c_str(), 1); }

private:
	std::string saved_;
};

// A restore that fails says why in one line and leaves no target behind.
void expectOneLineAndNoTarget(const Result<store::Manifest> &r, const fs::path &target, const std::string &says)
{
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kIo);
	EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().toString();
	EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().toString();
	EXPECT_FALSE(fs::exists(target));
}

TEST_F(ClockedStoreTest, AQcow2RestoreWithoutAWorkingQemuNbdFailsInOneLine)
{
	fs::path qcow = root_ / "restored.qcow2";
	{
		QemuNbdStandIn none(root_ / "bin-none", "");
		expectOneLineAndNoTarget(createVolume(*store_, {id_, qcow, "qcow2", {}, ""}), qcow,
					 "cannot start qemu-nbd for the new qcow2 image");
	}
	{
		QemuNbdStandIn refusing(root_ / "bin-refusing", "echo 'qemu-nbd: Failed to blk_new_open' >&2; exit 1");
		expectOneLineAndNoTarget(createVolume(*store_, {id_, qcow, "qcow2", {}, ""}), qcow,
					 "qemu-nbd could not serve the new qcow2 image: qemu-nbd: Failed to blk_new_open");
	}
}

TEST_F(ClockedStoreTest, AQcow2RestoreWhoseQemuNbdStopsFailsWithinTheTimeoutInOneLine)
{
	fs::path qcow = root_ / "restored.qcow2";
	std::once_flag once;
	std::vector<pid_t> stopped;
	RestoreRequest request{id_, qcow, "qcow2", {}, ""};
	request.answerTimeout = std::chrono::seconds(1);
	// Stopped once the first chunk is in: what is left never comes back.
	request.progress = [&](uint64_t, uint64_t) {
		std::call_once(once, [&] {
			stopped = test::childrenNamed("qemu-nbd");
			for (pid_t pid : stopped)
				::kill(pid, SIGSTOP);
		});
	};
	expectOneLineAndNoTarget(createVolume(*store_, request), qcow,
				 "qemu-nbd's export of the new qcow2 image " + qcow.string() +
					 " answered nothing within 1 s ([hypervisor] timeout): is qemu-nbd stopped or hung?");
	ASSERT_EQ(stopped.size(), 1u);
	EXPECT_TRUE(test::childrenNamed("qemu-nbd").empty()) << "qemu-nbd killed and reaped";
}

// A virtsnap or virtsnapd SIGKILLed mid-restore takes its qemu-nbd with it.
TEST_F(ClockedStoreTest, QemuNbdDiesWithTheProcessThatStartedIt)
{
	int report[2];
	ASSERT_EQ(::pipe(report), 0);
	pid_t restorer = ::fork();
	ASSERT_GE(restorer, 0);
	if (restorer == 0) {
		fs::path image = root_ / "orphan.qcow2";
		UniqueFd fd(::open(image.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
		auto writer = Qcow2ImageWriter::create(fd.get(), 1 << 20, nullptr, image.string(), std::chrono::seconds(5));
		auto found = test::childrenNamed("qemu-nbd");
		pid_t nbd = writer && found.size() == 1 ? found[0] : -1;
		(void)!::write(report[1], &nbd, sizeof nbd);
		::pause();
		::_exit(0);
	}
	::close(report[1]);
	pid_t nbd = -1;
	EXPECT_EQ(::read(report[0], &nbd, sizeof nbd), ssize_t(sizeof nbd));
	::close(report[0]);
	::kill(restorer, SIGKILL);
	::waitpid(restorer, nullptr, 0);
	ASSERT_GT(nbd, 0) << "the restorer started no qemu-nbd";
	// Bounded only to keep a failure from hanging the suite.
	for (int i = 0; i < 1000 && !test::processGone(nbd); i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	bool gone = test::processGone(nbd);
	if (!gone)
		::kill(nbd, SIGKILL);
	EXPECT_TRUE(gone) << "qemu-nbd outlived the process that started it";
}

TEST_F(ClockedStoreTest, AQcow2RestoreOntoAFullFileSystemFailsInOneLine)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "needs root to mount a small tmpfs";
	// Room for the qcow2's header and tables, not for the snapshot's data.
	fs::path full = root_ / "full";
	fs::create_directories(full);
	ASSERT_EQ(::mount("tmpfs", full.c_str(), "tmpfs", 0, "size=256k"), 0) << std::strerror(errno);
	fs::path qcow = full / "restored.qcow2";
	auto r = createVolume(*store_, {id_, qcow, "qcow2", {}, ""});
	expectOneLineAndNoTarget(r, qcow, "No space left on device");
	EXPECT_EQ(::umount(full.c_str()), 0) << std::strerror(errno);
}

// A raw restore (no helper program: it runs after the test above too).
TEST_F(ClockedStoreTest, ARestoredFileCarriesItsSnapshotsProductCodesToTheVolumeThatAttachesIt)
{
	const std::vector<ProductCode> codes{{"abc123", "marketplace"}, {"dp9", "devpay"}};
	auto m = store_->getManifest(id_);
	ASSERT_TRUE(m) << describe(m);
	m->productCodes = codes;
	ASSERT_TRUE(store_->putManifest(*m, true));
	std::vector<std::string> warnings;
	auto warn = [&](const std::string &w) { warnings.push_back(w); };

	fs::path coded = root_ / "coded.raw";
	auto restored = createVolume(*store_, {id_, coded, "raw", {}, "", std::nullopt, warn});
	ASSERT_TRUE(restored) << describe(restored);
	auto mark = readProductCodeMark(coded);
	ASSERT_TRUE(mark) << describe(mark);
	EXPECT_EQ(*mark, codes);
	EXPECT_TRUE(warnings.empty());

	// Attached as some other disk: its volume gains the codes, once.
	VolumeRecord other{"vol-0123456789abcdef0", "name:other", "other", "vdc", 0, "standard", {}, false, "",
			   {{"zz1", "marketplace"}}};
	hypervisor::DiskInfo disk;
	disk.diskId = "vdc";
	disk.filename = coded.string();
	EXPECT_TRUE(addImageProductCodes(other, disk, warn));
	EXPECT_EQ(other.productCodes,
		  (std::vector<ProductCode>{{"zz1", "marketplace"}, {"abc123", "marketplace"}, {"dp9", "devpay"}}));
	EXPECT_FALSE(addImageProductCodes(other, disk, warn)) << "nothing new";
	disk.filename = "json:{\"driver\": \"file\", \"filename\": \"" + coded.string() + "\"}";
	VolumeRecord plain{"vol-0123456789abcdef1", "name:other", "other", "vdd", 0, "standard", {}, false, "", {}};
	EXPECT_FALSE(addImageProductCodes(plain, disk, warn)) << "not a plain path";
	// Handed to QEMU by descriptor: /proc/self/fd/N is another file here.
	UniqueFd held(::open(coded.c_str(), O_RDONLY | O_CLOEXEC));
	ASSERT_TRUE(held.isValid()) << std::strerror(errno);
	disk.filename = "/proc/self/fd/" + std::to_string(held.get());
	EXPECT_FALSE(addImageProductCodes(plain, disk, warn)) << "a descriptor's name";
	EXPECT_TRUE(warnings.empty());

	// A mark that is not ours: left out, with one warning.
	ASSERT_EQ(::setxattr(coded.c_str(), kProductCodeMarkAttribute, "abc:paid", 8, 0), 0) << std::strerror(errno);
	disk.filename = coded.string();
	EXPECT_FALSE(addImageProductCodes(plain, disk, warn));
	EXPECT_TRUE(plain.productCodes.empty());
	ASSERT_EQ(warnings.size(), 1u);
	EXPECT_NE(warnings[0].find("InvalidParameterValue"), std::string::npos) << warnings[0];

	// A snapshot without codes leaves no mark.
	ASSERT_NO_FATAL_FAILURE(save("snap-0123456789abcdef1", {}, 2));
	fs::path uncoded = root_ / "uncoded.raw";
	ASSERT_TRUE(createVolume(*store_, {"snap-0123456789abcdef1", uncoded, "raw", {}, "", std::nullopt, warn}));
	EXPECT_LT(::getxattr(uncoded.c_str(), kProductCodeMarkAttribute, nullptr, 0), 0);
	EXPECT_EQ(errno, ENODATA);
}

// procfs keeps no user xattrs, as a filesystem mounted without them: the
// restore goes on, and one line names the target.
TEST_F(ClockedStoreTest, AFileThatCannotKeepProductCodesIsOneWarning)
{
	UniqueFd proc(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
	ASSERT_TRUE(proc.isValid()) << std::strerror(errno);
	std::vector<std::string> warnings;
	markRestoredImage(proc.get(), "/srv/images/new.qcow2", {{"abc123", "marketplace"}},
			  [&](const std::string &w) { warnings.push_back(w); });
	ASSERT_EQ(warnings.size(), 1u);
	EXPECT_NE(warnings[0].find("/srv/images/new.qcow2"), std::string::npos) << warnings[0];
	EXPECT_NE(warnings[0].find("product codes"), std::string::npos) << warnings[0];
	EXPECT_EQ(warnings[0].find('\n'), std::string::npos) << warnings[0];
	markRestoredImage(proc.get(), "/srv/images/new.qcow2", {}, [&](const std::string &w) { warnings.push_back(w); });
	EXPECT_EQ(warnings.size(), 1u) << "no codes, nothing to keep";
}

} // namespace
} // namespace virtsnap::engine
