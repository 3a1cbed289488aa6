// ScratchDir (plugin/core/scratch_dir.h): made private, removed with what
// it holds when its owner goes, and only once when moved.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "core/scratch_dir.h"
#include "tests/support/test_env.h"

namespace virtsnap {
namespace {

namespace fs = std::filesystem;

TEST(ScratchDir, PrivateUnderItsParentAndRemovedWithItsContents)
{
	test::TempDir parent("vs-scratch");
	fs::path path;
	{
		auto dir = ScratchDir::create(parent.path(), "unit-");
		ASSERT_TRUE(dir) << dir.error().toString();
		path = dir->path();
		EXPECT_EQ(path.parent_path(), fs::path(parent.path()));
		EXPECT_TRUE(path.filename().string().starts_with("unit-"));
		struct stat st {};
		ASSERT_EQ(::stat(path.c_str(), &st), 0);
		EXPECT_EQ(st.st_mode & 0777, 0700u);
		fs::create_directories(path / "sub");
		std::ofstream(path / "sub" / "file") << "x";
	}
	EXPECT_FALSE(fs::exists(path));
}

TEST(ScratchDir, MovedItIsRemovedOnceByItsLastOwner)
{
	test::TempDir parent("vs-scratch");
	auto dir = ScratchDir::create(parent.path(), "unit-");
	ASSERT_TRUE(dir) << dir.error().toString();
	fs::path path = dir->path();
	{
		ScratchDir taken(std::move(*dir));
		EXPECT_TRUE(dir->path().empty());
		EXPECT_TRUE(fs::exists(path));
		ScratchDir other = std::move(taken);
		EXPECT_TRUE(fs::exists(path));
	}
	EXPECT_FALSE(fs::exists(path));
}

TEST(ScratchDir, AssignedOverItRemovesTheOneItHeld)
{
	test::TempDir parent("vs-scratch");
	auto first = ScratchDir::create(parent.path(), "unit-");
	auto second = ScratchDir::create(parent.path(), "unit-");
	ASSERT_TRUE(first && second);
	fs::path firstPath = first->path(), secondPath = second->path();
	*first = std::move(*second);
	EXPECT_FALSE(fs::exists(firstPath));
	EXPECT_EQ(first->path(), secondPath);
	EXPECT_TRUE(fs::exists(secondPath));
}

// QEMU and libvirt remove their own files from a capture's directory while
// it is being removed; an entry vanishing under remove_all must not leave
// the directory behind.
TEST(ScratchDir, RemovedWhileAnotherRemovesWhatItHolds)
{
	test::TempDir parent("vs-scratch");
	for (int round = 0; round < 20; round++) {
		fs::path path;
		std::vector<fs::path> files;
		std::thread other;
		{
			auto dir = ScratchDir::create(parent.path(), "unit-");
			ASSERT_TRUE(dir) << dir.error().toString();
			path = dir->path();
			for (int i = 0; i < 200; i++) {
				files.push_back(path / ("f" + std::to_string(i)));
				std::ofstream(files.back()) << "x";
			}
			other = std::thread([&] {
				for (auto f = files.rbegin(); f != files.rend(); ++f)
					::unlink(f->c_str());
			});
		}
		other.join();
		ASSERT_FALSE(fs::exists(path)) << "round " << round;
	}
}

TEST(ScratchDir, AParentThatIsNotThereIsAnError)
{
	auto dir = ScratchDir::create("/nonexistent/virtsnap", "unit-");
	ASSERT_FALSE(dir);
	EXPECT_EQ(dir.error().message,
		  "create a scratch directory in /nonexistent/virtsnap: No such file or directory");
}

} // namespace
} // namespace virtsnap
