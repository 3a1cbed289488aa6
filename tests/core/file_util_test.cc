// The durable-write helpers every store object goes through: a refusal must
// leave the target as it was, and an abandoned temporary must vanish.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include <filesystem>

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/file_util.h"
#include "tests/support/core_test_util.h"
#include "tests/support/test_env.h"

namespace virtsnap::core::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::test::describe;
using virtsnap::test::fileMode;
using virtsnap::test::filesContaining;
using virtsnap::test::randomData;

class FileUtilTest : public ::testing::Test
{
protected:
	virtsnap::test::TempDir tmp_{"vs-file-util-test"};
	fs::path root_{tmp_.path()};
};

TEST_F(FileUtilTest, WriteFileAtomicWritesContentAndMode)
{
	fs::path p = root_ / "sub" / "file";
	ASSERT_TRUE(makeDirs(p.parent_path()));
	Bytes data = randomData(10000, 1);
	auto r = writeFileAtomic(p, data, 0640);
	ASSERT_TRUE(r) << describe(r);
	auto back = readFile(p);
	ASSERT_TRUE(back);
	EXPECT_EQ(*back, data);
	// Never more than asked (a umask only clears bits), and the owner can
	// read it back.
	EXPECT_EQ(fileMode(p) & ~mode_t(0640), 0u);
	EXPECT_EQ(fileMode(p) & 0600, 0600u);
	EXPECT_TRUE(filesContaining(root_, ".tmp-").empty());

	// The default replaces.
	Bytes other = randomData(10, 2);
	ASSERT_TRUE(writeFileAtomic(p, other));
	back = readFile(p);
	ASSERT_TRUE(back);
	EXPECT_EQ(*back, other);
}

TEST_F(FileUtilTest, WriteFileAtomicWithoutOverwriteRefusesExistingFile)
{
	fs::path p = root_ / "existing";
	Bytes original = randomData(500, 3);
	ASSERT_TRUE(writeFileAtomic(p, original, 0600));
	struct stat before{};
	ASSERT_EQ(::stat(p.c_str(), &before), 0);

	auto r = writeFileAtomic(p, randomData(800, 4), 0644, false);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kTargetExists);
	EXPECT_NE(r.error().message.find(p.string()), std::string::npos) << r.error().message;

	auto back = readFile(p);
	ASSERT_TRUE(back);
	EXPECT_EQ(*back, original);
	struct stat after{};
	ASSERT_EQ(::stat(p.c_str(), &after), 0);
	EXPECT_EQ(after.st_ino, before.st_ino);
	EXPECT_EQ(after.st_mode, before.st_mode);
	EXPECT_TRUE(filesContaining(root_, ".tmp-").empty());

	// Absent, the same call creates it.
	fs::path fresh = root_ / "fresh";
	ASSERT_TRUE(writeFileAtomic(fresh, original, 0644, false));
	auto created = readFile(fresh);
	ASSERT_TRUE(created);
	EXPECT_EQ(*created, original);
}

TEST_F(FileUtilTest, TempFileDroppedUncommittedIsRemoved)
{
	fs::path target = root_ / "target";
	fs::path temp;
	{
		auto t = TempFile::create(target);
		ASSERT_TRUE(t) << describe(t);
		temp = t->tempPath();
		EXPECT_EQ(temp.parent_path(), target.parent_path());
		EXPECT_NE(temp.filename().string().find("target.tmp-"), std::string::npos) << temp;
		EXPECT_TRUE(fs::exists(temp));
		ASSERT_TRUE(writeAll(t->fd(), randomData(100, 5)));
		EXPECT_FALSE(fs::exists(target));
	}
	EXPECT_FALSE(fs::exists(temp));
	EXPECT_FALSE(fs::exists(target));
	EXPECT_TRUE(fs::is_empty(root_));
}

TEST_F(FileUtilTest, TempFileCommitRenamesIntoPlace)
{
	fs::path target = root_ / "target";
	Bytes data = randomData(4096, 6);
	fs::path temp;
	{
		auto t = TempFile::create(target, 0600);
		ASSERT_TRUE(t);
		temp = t->tempPath();
		ASSERT_TRUE(writeAll(t->fd(), data));
		auto c = t->commit();
		ASSERT_TRUE(c) << describe(c);
	}
	EXPECT_FALSE(fs::exists(temp));
	auto back = readFile(target);
	ASSERT_TRUE(back);
	EXPECT_EQ(*back, data);
	EXPECT_EQ(fileMode(target), 0600u);
}

TEST_F(FileUtilTest, TempFileCommitWithoutOverwriteKeepsTarget)
{
	fs::path target = root_ / "target";
	Bytes original = randomData(100, 7);
	ASSERT_TRUE(writeFileAtomic(target, original));
	{
		auto t = TempFile::create(target);
		ASSERT_TRUE(t);
		ASSERT_TRUE(writeAll(t->fd(), randomData(100, 8)));
		auto c = t->commit(false);
		ASSERT_FALSE(c);
		EXPECT_EQ(c.error().code, errc::kTargetExists);
	}
	auto back = readFile(target);
	ASSERT_TRUE(back);
	EXPECT_EQ(*back, original);
	EXPECT_TRUE(filesContaining(root_, ".tmp-").empty());
}

TEST_F(FileUtilTest, MovedTempFileIsRemovedOnceByItsNewOwner)
{
	fs::path target = root_ / "target";
	fs::path temp;
	{
		std::optional<TempFile> moved;
		{
			auto t = TempFile::create(target);
			ASSERT_TRUE(t);
			temp = t->tempPath();
			moved.emplace(std::move(*t));
			EXPECT_EQ(moved->tempPath(), temp);
		} // the moved-from one, destroyed here, must not remove it
		EXPECT_TRUE(fs::exists(temp));
	}
	EXPECT_FALSE(fs::exists(temp));
}

// Regression: a defaulted move assignment once leaked the target's
// uncommitted temporary file.
TEST_F(FileUtilTest, TempFileReplacedByMoveAssignmentIsRemoved)
{
	fs::path tempA, tempB;
	{
		auto a = TempFile::create(root_ / "a");
		auto b = TempFile::create(root_ / "b");
		ASSERT_TRUE(a && b);
		tempA = a->tempPath();
		tempB = b->tempPath();
		*a = std::move(*b);
		EXPECT_EQ(a->tempPath(), tempB);
		EXPECT_FALSE(fs::exists(tempA)) << "the temporary a owned before the assignment is left behind";
	}
	EXPECT_FALSE(fs::exists(tempB));
	EXPECT_TRUE(filesContaining(root_, ".tmp-").empty());
}

TEST_F(FileUtilTest, FailErrnoMapsFullDiskAndPermissionToTheirCodes)
{
	for (int err : {ENOSPC, EDQUOT}) {
		auto e = failErrno("write /x", err);
		EXPECT_EQ(e.error().code, errc::kNoSpace) << err;
		EXPECT_EQ(e.error().message.rfind("write /x: ", 0), 0u) << e.error().message;
		EXPECT_NE(e.error().message.find(std::strerror(err)), std::string::npos) << e.error().message;
	}
	for (int err : {EACCES, EPERM})
		EXPECT_EQ(failErrno("open /z", err).error().code, errc::kAccessDenied) << err;
	for (int err : {EIO, ENOENT, EROFS}) {
		auto e = failErrno("open /y", err);
		EXPECT_EQ(e.error().code, errc::kIo) << err;
		EXPECT_NE(e.error().message.find(std::strerror(err)), std::string::npos);
	}
}

TEST_F(FileUtilTest, WriteToAFullDeviceIsInsufficientStorage)
{
	// /dev/full fails every write with ENOSPC: the real errno path.
	int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		GTEST_SKIP() << "/dev/full: " << std::strerror(errno);
	auto r = writeAll(fd, randomData(100, 9));
	::close(fd);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kNoSpace) << r.error().message;
}

TEST_F(FileUtilTest, ReadPastEndOfFileIsAnError)
{
	fs::path p = root_ / "short";
	ASSERT_TRUE(writeFileAtomic(p, randomData(10, 10)));
	int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	Bytes out(20);
	auto r = preadAll(fd, out, 0);
	::close(fd);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
}

TEST_F(FileUtilTest, MakeDirsCreatesParentsAndRefusesAFile)
{
	fs::path deep = root_ / "a" / "b" / "c";
	ASSERT_TRUE(makeDirs(deep));
	EXPECT_TRUE(fs::is_directory(deep));
	ASSERT_TRUE(makeDirs(deep)); // idempotent
	fs::path file = root_ / "file";
	ASSERT_TRUE(writeFileAtomic(file, randomData(1, 11)));
	EXPECT_FALSE(makeDirs(file));
	EXPECT_FALSE(makeDirs(file / "sub"));
}

} // namespace
} // namespace virtsnap::core::test
