// create-volume's qcow2 path as virtsnapd runs it: after a thread acted as
// a caller (setfsuid: core/acting_as.h) the process is not dumpable, and
// under the systemd unit its children lack CAP_SYS_PTRACE, so they may
// not open /proc/OURPID/fd/N. The restore must still work, bit-exact: its
// helper programs open the files they were handed as /proc/self/fd/N.
//
// And a qcow2 restore of a volume past 16 TiB, which ext4 cannot hold as a
// raw file: written straight into the qcow2, sparse, bit-exact.
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/process.h"
#include "engine/restore.h"
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

} // namespace
} // namespace virtsnap::engine
