// The product codes an image file carries (core/product_code_mark.h), on
// real files: written through a descriptor, read by name, kept through a
// rename and `cp -a`, and what a reader makes of files without a mark or
// with one that is not ours.
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "core/process.h"
#include "core/product_code_mark.h"
#include "core/unique_fd.h"
#include "tests/support/core_test_util.h"
#include "tests/support/test_env.h"

namespace virtsnap::core::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::test::codeOf;
using virtsnap::test::describe;

class ProductCodeMarkTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		fd_ = UniqueFd(::open(image_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644));
		ASSERT_TRUE(fd_.isValid()) << std::strerror(errno);
	}

	// Set as a user with setfattr would, past the code under test.
	void setRaw(const std::string &value)
	{
		ASSERT_EQ(::setxattr(image_.c_str(), "user.virtsnap.product-codes", value.data(), value.size(), 0), 0)
			<< std::strerror(errno);
	}

	virtsnap::test::TempDir tmp_{"vs-product-code-mark-test"};
	fs::path image_{tmp_.file("image.qcow2")};
	UniqueFd fd_;
	const std::vector<ProductCode> codes_{{"abc123", "marketplace"}, {"dp9", "devpay"}};
};

TEST_F(ProductCodeMarkTest, WrittenThroughTheDescriptorReadByName)
{
	ASSERT_TRUE(writeProductCodeMark(fd_.get(), codes_));
	char raw[256] = {};
	ssize_t n = ::getxattr(image_.c_str(), "user.virtsnap.product-codes", raw, sizeof raw);
	ASSERT_GT(n, 0) << std::strerror(errno);
	EXPECT_EQ(std::string(raw, size_t(n)), "abc123:marketplace dp9:devpay");
	auto read = readProductCodeMark(image_);
	ASSERT_TRUE(read) << describe(read);
	EXPECT_EQ(*read, codes_);
}

TEST_F(ProductCodeMarkTest, FollowsTheFileThroughARenameAndCpDashA)
{
	ASSERT_TRUE(writeProductCodeMark(fd_.get(), codes_));
	const fs::path moved = tmp_.file("moved.qcow2");
	fs::rename(image_, moved);
	auto renamed = readProductCodeMark(moved);
	ASSERT_TRUE(renamed) << describe(renamed);
	EXPECT_EQ(*renamed, codes_);
	const fs::path copied = tmp_.file("copied.qcow2");
	auto cp = runProgram({"cp", "-a", moved.string(), copied.string()});
	ASSERT_TRUE(cp) << describe(cp);
	auto read = readProductCodeMark(copied);
	ASSERT_TRUE(read) << describe(read);
	EXPECT_EQ(*read, codes_);
	// Through a symlink to it, as a domain's disk may name it.
	const fs::path link = tmp_.file("link.qcow2");
	fs::create_symlink(copied, link);
	auto linked = readProductCodeMark(link);
	ASSERT_TRUE(linked) << describe(linked);
	EXPECT_EQ(*linked, codes_);
}

TEST_F(ProductCodeMarkTest, NoMarkNoFileAndNoRegularFileHaveNoCodes)
{
	for (const fs::path &path : {image_, fs::path(tmp_.file("gone.qcow2")), fs::path(tmp_.path()),
				     fs::path("/dev/null")}) {
		auto read = readProductCodeMark(path);
		ASSERT_TRUE(read) << path << ": " << describe(read);
		EXPECT_TRUE(read->empty()) << path;
	}
	setRaw("");
	auto empty = readProductCodeMark(image_);
	ASSERT_TRUE(empty) << describe(empty);
	EXPECT_TRUE(empty->empty());
}

TEST_F(ProductCodeMarkTest, AMarkThatDoesNotParseIsRefusedNamingTheFile)
{
	setRaw("  abc123\n dp9:devpay abc123:devpay ");
	auto spaced = readProductCodeMark(image_);
	ASSERT_TRUE(spaced) << describe(spaced);
	EXPECT_EQ(*spaced, (std::vector<ProductCode>{{"abc123", "marketplace"}, {"dp9", "devpay"}})) << "by id, once";
	for (const std::string &bad : {std::string("abc:paid"), std::string("abc123,dp9"), std::string(200, 'a')}) {
		setRaw(bad);
		auto read = readProductCodeMark(image_);
		EXPECT_EQ(codeOf(read), "InvalidParameterValue") << bad.substr(0, 20);
		if (!read) {
			EXPECT_NE(read.error().message.find(image_.string()), std::string::npos) << read.error().message;
			EXPECT_EQ(read.error().message.find('\n'), std::string::npos) << read.error().message;
		}
	}
}

// What the reader would refuse is not written: a file marked so would lose
// its codes at every capture, silently but for a warning.
TEST_F(ProductCodeMarkTest, AMarkTooLongToReadBackIsNotWritten)
{
	std::vector<ProductCode> many;
	for (int i = 0; i < 100; i++)
		many.push_back({std::string(60, 'a') + std::to_string(1000 + i), "marketplace"});
	auto written = writeProductCodeMark(fd_.get(), many);
	EXPECT_EQ(codeOf(written), "InvalidParameterValue") << describe(written);
	char raw[16];
	EXPECT_LT(::getxattr(image_.c_str(), "user.virtsnap.product-codes", raw, sizeof raw), 0) << "nothing set";
	auto read = readProductCodeMark(image_);
	ASSERT_TRUE(read) << describe(read);
	EXPECT_TRUE(read->empty());
}

// A real ENOTSUP from the kernel: procfs keeps no user xattrs. (Not a
// place an image goes; the point is what the error is called.)
TEST_F(ProductCodeMarkTest, AFilesystemWithoutUserXattrsIsUnsupported)
{
	UniqueFd proc(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
	ASSERT_TRUE(proc.isValid()) << std::strerror(errno);
	auto written = writeProductCodeMark(proc.get(), codes_);
	EXPECT_EQ(codeOf(written), "UnsupportedOperation") << describe(written);
}

} // namespace
} // namespace virtsnap::core::test
