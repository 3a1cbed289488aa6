// A raw restore's writing (engine/volume_writer.h, direct_file.h) on real
// files: with O_DIRECT where the file system takes it, buffered where it
// does not (ramfs; tmpfs before Linux 6.6), the last block of a volume off
// the 4096 alignment buffered; the bytes always those of the snapshot,
// zero chunks left holes, and the descriptor handed back as it came.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <iterator>

#include "engine/volume_writer.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine {
namespace {

using store::test::describe;

constexpr uint32_t kChunk = 64 * 1024;
// 10 MiB: more adjacent chunks than one gathered write holds.
constexpr uint64_t kSlots = 160;
// Slots [kZeroFirst, kZeroEnd) are zeros, the rest random or text.
constexpr uint64_t kZeroFirst = 70, kZeroEnd = 80;

// The open file description's flags, as the kernel shows them.
int fdFlags(int fd)
{
	std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
	for (std::string key; in >> key;) {
		if (key == "flags:") {
			std::string octal;
			in >> octal;
			return int(std::stol(octal, nullptr, 8));
		}
	}
	return -1;
}

// Whether files in `dir` take O_DIRECT.
bool takesDirect(const fs::path &dir)
{
	fs::path probe = dir / "probe";
	int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
	if (fd >= 0)
		::close(fd);
	fs::remove(probe);
	return fd >= 0;
}

class VolumeWriterTest : public store::test::StoreDirTest
{
protected:
	void SetUp() override
	{
		store_ = initAndOpen(kChunk);
		ASSERT_TRUE(store_);
		codec_ = store_->newCodec();
	}

	// A snapshot of `size` bytes: random chunks, zeros, then text (which
	// compresses) to the end, whose last chunk is short when `size` is.
	void save(uint64_t size)
	{
		volume_.assign(size, 0);
		index_ = std::make_unique<store::SnapshotIndex>(size, kChunk);
		auto writer = store_->newWriter();
		for (uint64_t s = 0; s * kChunk < size; s++) {
			if (s >= kZeroFirst && s < kZeroEnd)
				continue;
			uint64_t length = std::min<uint64_t>(kChunk, size - s * kChunk);
			Bytes chunk = store::test::randomData(length, s);
			if (s >= kZeroEnd)
				for (uint8_t &b : chunk)
					b = uint8_t('a' + b % 4);
			std::copy(chunk.begin(), chunk.end(), volume_.begin() + long(s * kChunk));
			auto id = writer->put(*codec_, chunk, store::ChunkType::Data);
			ASSERT_TRUE(id) << describe(id);
			index_->set(s, *id);
		}
		ASSERT_TRUE(writer->commit());
	}

	// Restores into a new file in `dir`, sized as restore sizes it, and
	// notes whether O_DIRECT was on while the data went out. (ramfs shows
	// no holes: every file is all data to SEEK_HOLE.)
	void restore(const fs::path &dir, bool showsHoles = true)
	{
		target_ = dir / "restored.raw";
		UniqueFd fd(::open(target_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
		ASSERT_TRUE(fd.isValid()) << std::strerror(errno);
		ASSERT_EQ(::ftruncate(fd.get(), off_t(volume_.size())), 0);
		const int before = fdFlags(fd.get());
		directSeen_ = bufferedSeen_ = 0;
		auto progress = [&](uint64_t, uint64_t) {
			((fdFlags(fd.get()) & O_DIRECT) ? directSeen_ : bufferedSeen_)++;
		};
		auto written = writeVolume(*store_, *index_, fd.get(), progress);
		ASSERT_TRUE(written) << describe(written);
		EXPECT_EQ(fdFlags(fd.get()), before) << "the descriptor keeps its flags";
		ASSERT_EQ(::fdatasync(fd.get()), 0);
		if (!showsHoles)
			return;
		// Zero chunks are not written.
		off_t zeros = off_t(kZeroFirst * kChunk);
		EXPECT_EQ(::lseek(fd.get(), zeros, SEEK_HOLE), zeros);
		EXPECT_EQ(::lseek(fd.get(), zeros, SEEK_DATA), off_t(kZeroEnd * kChunk));
	}

	void expectRestoredBytes()
	{
		std::ifstream in(target_, std::ios::binary);
		Bytes got{std::istreambuf_iterator<char>(in), {}};
		ASSERT_EQ(got.size(), volume_.size());
		EXPECT_TRUE(got == volume_) << "the restored bytes differ from the snapshot's";
	}

	std::unique_ptr<store::Store> store_;
	std::unique_ptr<store::ChunkCodec> codec_;
	std::unique_ptr<store::SnapshotIndex> index_;
	Bytes volume_;
	fs::path target_;
	std::atomic<int> directSeen_{0}, bufferedSeen_{0};
};

TEST_F(VolumeWriterTest, ARawRestoreIsWrittenWithODirectWhereTheFileSystemTakesIt)
{
	if (!takesDirect(root_))
		GTEST_SKIP() << root_ << " takes no O_DIRECT";
	ASSERT_NO_FATAL_FAILURE(save(kSlots * kChunk));
	ASSERT_NO_FATAL_FAILURE(restore(root_));
	expectRestoredBytes();
	EXPECT_GT(directSeen_, 0);
	EXPECT_EQ(bufferedSeen_, 0);
}

// The last block past the volume's last multiple of 4096 cannot go direct.
TEST_F(VolumeWriterTest, AVolumeSizeOffTheAlignmentHasItsTailWrittenBuffered)
{
	ASSERT_NO_FATAL_FAILURE(save(kSlots * kChunk - 5000));
	ASSERT_NO_FATAL_FAILURE(restore(root_));
	expectRestoredBytes();
	EXPECT_EQ(fs::file_size(target_), kSlots * kChunk - 5000);
	if (takesDirect(root_)) {
		EXPECT_GT(directSeen_, 0);
	}
}

// ramfs refuses O_DIRECT (as tmpfs did before Linux 6.6): buffered, the
// same bytes. And /dev/shm, whatever its kernel does.
TEST_F(VolumeWriterTest, AFileSystemWithoutODirectGetsTheSameBytesBuffered)
{
	ASSERT_NO_FATAL_FAILURE(save(kSlots * kChunk - 5000));
	if (fs::is_directory("/dev/shm")) {
		virtsnap::test::TempDir shm("vs-volume-writer", "/dev/shm");
		ASSERT_NO_FATAL_FAILURE(restore(shm.path()));
		expectRestoredBytes();
		fs::remove(target_);
	}
	if (::geteuid() != 0)
		GTEST_SKIP() << "needs root to mount a ramfs";
	fs::path ramfs = root_ / "ramfs";
	fs::create_directories(ramfs);
	ASSERT_EQ(::mount("ramfs", ramfs.c_str(), "ramfs", 0, nullptr), 0) << std::strerror(errno);
	ASSERT_FALSE(takesDirect(ramfs));
	restore(ramfs, false);
	expectRestoredBytes();
	EXPECT_EQ(directSeen_, 0);
	EXPECT_GT(bufferedSeen_, 0);
	fs::remove(target_);
	EXPECT_EQ(::umount(ramfs.c_str()), 0) << std::strerror(errno);
}

} // namespace
} // namespace virtsnap::engine
