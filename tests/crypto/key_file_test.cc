#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/bytes.h"
#include "crypto/crypto.h"
#include "tests/support/test_env.h"

namespace virtsnap::crypto {
namespace {

namespace fs = std::filesystem;
using virtsnap::test::fileMode;
using virtsnap::test::readFile;

// Sets the process umask for one test and puts the old one back.
class UmaskGuard
{
public:
	explicit UmaskGuard(mode_t mask) : old_(::umask(mask)) {}
	~UmaskGuard() { ::umask(old_); }

private:
	mode_t old_;
};

class KeyFileTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		auto k = SecretKey::random();
		ASSERT_TRUE(k);
		key_ = *k;
		keyHex_ = toHex(key_.bytes());
	}

	static void writeRaw(const fs::path &p, const std::string &content, mode_t mode)
	{
		std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
		ASSERT_EQ(::chmod(p.c_str(), mode), 0);
	}
	void expectNoKeyIn(const Error &e)
	{
		EXPECT_EQ(e.message.find(keyHex_), std::string::npos) << e.message;
		EXPECT_EQ(e.message.find(keyHex_.substr(0, 16)), std::string::npos) << e.message;
	}

	virtsnap::test::TempDir tmp_{"virtsnap-keyfile"};
	fs::path dir_{tmp_.path()};
	SecretKey key_;
	std::string keyHex_;
};

TEST_F(KeyFileTest, RoundTrip)
{
	fs::path p = dir_ / "key";
	ASSERT_TRUE(writeKeyFile(p, key_));
	auto loaded = loadKeyFile(p);
	ASSERT_TRUE(loaded) << loaded.error().toString();
	EXPECT_TRUE(std::ranges::equal(loaded->bytes(), key_.bytes()));
}

TEST_F(KeyFileTest, ExactFormat)
{
	fs::path p = dir_ / "key";
	ASSERT_TRUE(writeKeyFile(p, key_));
	EXPECT_EQ(readFile(p), "virtsnap-key-v1 " + keyHex_ + "\n");
}

TEST_F(KeyFileTest, LoadsHandWrittenFile)
{
	fs::path p = dir_ / "key";
	writeRaw(p, "virtsnap-key-v1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff\n", 0600);
	auto loaded = loadKeyFile(p);
	ASSERT_TRUE(loaded) << loaded.error().toString();
	EXPECT_EQ(toHex(loaded->bytes()), "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff");
}

TEST_F(KeyFileTest, ModeIs0600EvenWithUmaskZero)
{
	UmaskGuard mask(0);
	fs::path p = dir_ / "key";
	ASSERT_TRUE(writeKeyFile(p, key_));
	EXPECT_EQ(fileMode(p), mode_t(0600));
	EXPECT_TRUE(loadKeyFile(p));
}

TEST_F(KeyFileTest, ModeIs0600WithRestrictiveUmask)
{
	UmaskGuard mask(0277);
	fs::path p = dir_ / "a" / "b" / "key";
	auto r = writeKeyFile(p, key_);
	ASSERT_TRUE(r) << r.error().toString();
	EXPECT_EQ(fileMode(p), mode_t(0600));
	EXPECT_EQ(fileMode(dir_ / "a"), mode_t(0700));
	EXPECT_EQ(fileMode(dir_ / "a" / "b"), mode_t(0700));
	EXPECT_TRUE(loadKeyFile(p));
}

TEST_F(KeyFileTest, CreatesMissingDirectories0700)
{
	UmaskGuard mask(0);
	fs::path p = dir_ / "x" / "y" / "key";
	ASSERT_TRUE(writeKeyFile(p, key_));
	EXPECT_EQ(fileMode(dir_ / "x"), mode_t(0700));
	EXPECT_EQ(fileMode(dir_ / "x" / "y"), mode_t(0700));
	EXPECT_EQ(fileMode(p), mode_t(0600));
}

TEST_F(KeyFileTest, LeavesExistingDirectoryAlone)
{
	ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
	ASSERT_TRUE(writeKeyFile(dir_ / "key", key_));
	EXPECT_EQ(fileMode(dir_), mode_t(0755));
}

TEST_F(KeyFileTest, RefusesToOverwrite)
{
	fs::path p = dir_ / "key";
	writeRaw(p, "precious", 0600);
	auto r = writeKeyFile(p, key_);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kTargetExists);
	EXPECT_EQ(r.error().message, "key file " + p.string() + " already exists");
	EXPECT_EQ(readFile(p), "precious");

	// Also over a real key file.
	fs::path q = dir_ / "key2";
	ASSERT_TRUE(writeKeyFile(q, key_));
	auto other = SecretKey::random();
	ASSERT_TRUE(other);
	auto r2 = writeKeyFile(q, *other);
	ASSERT_FALSE(r2);
	EXPECT_EQ(r2.error().code, errc::kTargetExists);
	auto loaded = loadKeyFile(q);
	ASSERT_TRUE(loaded);
	EXPECT_TRUE(std::ranges::equal(loaded->bytes(), key_.bytes()));
}

TEST_F(KeyFileTest, RefusesGroupOrWorldAccess)
{
	fs::path p = dir_ / "key";
	ASSERT_TRUE(writeKeyFile(p, key_));
	for (mode_t mode : {mode_t(0644), mode_t(0640), mode_t(0604), mode_t(0660), mode_t(0606)}) {
		char octal[8];
		std::snprintf(octal, sizeof octal, "%04o", unsigned(mode));
		SCOPED_TRACE(octal);
		ASSERT_EQ(::chmod(p.c_str(), mode), 0);
		auto r = loadKeyFile(p);
		ASSERT_FALSE(r);
		EXPECT_EQ(r.error().code, errc::kKeyFile);
		EXPECT_EQ(r.error().message, "key file " + p.string() + " has mode " + octal +
						     "; it must be 0600 (chmod 600 " + p.string() + ")");
		expectNoKeyIn(r.error());
	}
}

TEST_F(KeyFileTest, AcceptsOwnerReadOnly)
{
	fs::path p = dir_ / "key";
	ASSERT_TRUE(writeKeyFile(p, key_));
	ASSERT_EQ(::chmod(p.c_str(), 0400), 0);
	auto loaded = loadKeyFile(p);
	ASSERT_TRUE(loaded) << loaded.error().toString();
	EXPECT_TRUE(std::ranges::equal(loaded->bytes(), key_.bytes()));
}

TEST_F(KeyFileTest, RefusesMissingFile)
{
	fs::path p = dir_ / "nope";
	auto r = loadKeyFile(p);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kKeyFile);
	EXPECT_EQ(r.error().message, "key file " + p.string() + " does not exist");
}

TEST_F(KeyFileTest, RefusesDirectory)
{
	fs::path p = dir_ / "adir";
	ASSERT_EQ(::mkdir(p.c_str(), 0700), 0);
	auto r = loadKeyFile(p);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kKeyFile);
}

TEST_F(KeyFileTest, RefusesMalformedContent)
{
	const std::string good = "virtsnap-key-v1 " + keyHex_ + "\n";
	std::string upper = keyHex_;
	std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) { return char(std::toupper(c)); });
	std::string badDigit = keyHex_;
	badDigit[10] = 'g';
	const std::string cases[] = {
		"",
		"garbage that is not a key at all\n",
		keyHex_ + "\n",                                 // no magic
		"virtsnap-key-v1 " + keyHex_,                   // no newline
		good + "\n",                                    // trailing line
		good + "extra",                                 // trailing junk
		"virtsnap-key-v2 " + keyHex_ + "\n",            // wrong version
		"virtsnap-key-v1  " + keyHex_.substr(1) + "\n", // two spaces
		"virtsnap-key-v1 " + keyHex_.substr(2) + "\n",  // 62 digits
		"virtsnap-key-v1 " + keyHex_ + "00\n",          // 66 digits
		"virtsnap-key-v1 " + upper + "\n",              // uppercase
		"virtsnap-key-v1 " + badDigit + "\n",           // non-hex digit
		"virtsnap-key-v1 " + keyHex_ + "\r",            // CR instead of LF
		std::string(81, '\0'),
	};
	fs::path p = dir_ / "key";
	int i = 0;
	for (const auto &content : cases) {
		SCOPED_TRACE(i++);
		writeRaw(p, content, 0600);
		auto r = loadKeyFile(p);
		ASSERT_FALSE(r);
		EXPECT_EQ(r.error().code, errc::kKeyFile);
		EXPECT_EQ(r.error().message, "key file " + p.string() +
						     " is not a virtsnap key (expected 'virtsnap-key-v1 <64 hex digits>')");
		expectNoKeyIn(r.error());
		EXPECT_EQ(r.error().message.find("garbage"), std::string::npos);
	}
	// The same file, well-formed, loads (so the cases above fail for
	// their content, not for the path or mode).
	writeRaw(p, good, 0600);
	EXPECT_TRUE(loadKeyFile(p));
}

} // namespace
} // namespace virtsnap::crypto
