// Key files. The content is the key itself, so every buffer that held it
// is wiped, and no message ever quotes the file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "core/file_util.h"
#include "core/unique_fd.h"
#include "crypto/crypto.h"

namespace virtsnap::crypto {

namespace {

constexpr std::string_view kMagic = "virtsnap-key-v1 ";
// magic, 64 hex digits, newline.
constexpr size_t kFileSize = kMagic.size() + 2 * kKeySize + 1;

// Wipes a stack buffer that held key material when it goes out of scope,
// on every return path.
template<size_t N>
struct WipedBuffer {
	char data[N];
	~WipedBuffer() { OPENSSL_cleanse(data, N); }
};

std::string octalMode(mode_t mode)
{
	char buf[16];
	std::snprintf(buf, sizeof buf, "%04o", unsigned(mode & 07777));
	return buf;
}

int hexDigit(char c)
{
	// Lowercase only: the format is exact, so a key file has one spelling.
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

// Like makeDirs(dir, 0700), but each directory it creates ends up exactly
// 0700: a restrictive umask (say 0277) would otherwise leave a directory
// its owner cannot create the next level (or the key file) in.
Result<void> makeKeyDirs(const fs::path &dir)
{
	struct stat st;
	if (::stat(dir.c_str(), &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return fail(errc::kKeyFile, dir.string() + " is not a directory");
		return {};
	}
	if (errno != ENOENT)
		return failErrno("stat " + dir.string(), errno);
	fs::path parent = dir.parent_path();
	if (parent.empty())
		parent = ".";
	else
		VS_TRY(makeKeyDirs(parent));
	if (::mkdir(dir.c_str(), 0700) != 0) {
		if (errno != EEXIST)
			return failErrno("mkdir " + dir.string(), errno);
		return {};
	}
	if (::chmod(dir.c_str(), 0700) != 0)
		return failErrno("chmod " + dir.string(), errno);
	return fsyncDir(parent);
}

} // namespace

Result<SecretKey> parseKeyFile(std::string_view text, const std::string &name)
{
	auto notAKey = [&] {
		return fail(errc::kKeyFile, "key file " + name +
						    " is not a virtsnap key (expected 'virtsnap-key-v1 <64 hex digits>')");
	};
	if (text.size() != kFileSize || !text.starts_with(kMagic) || text.back() != '\n')
		return notAKey();

	// SecretKey exposes its bytes only as const; build in a wiped buffer.
	struct WipedKey {
		std::array<uint8_t, kKeySize> b;
		~WipedKey() { OPENSSL_cleanse(b.data(), b.size()); }
	} raw;
	std::string_view hex = text.substr(kMagic.size(), 2 * kKeySize);
	for (size_t i = 0; i < kKeySize; i++) {
		int hi = hexDigit(hex[2 * i]), lo = hexDigit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return notAKey();
		raw.b[i] = uint8_t(hi << 4 | lo);
	}
	return SecretKey(std::span<const uint8_t, kKeySize>(raw.b));
}

Result<SecretKey> loadKeyFile(const std::filesystem::path &path)
{
	const std::string name = path.string();
	auto notAKey = [&] {
		return fail(errc::kKeyFile, "key file " + name +
						    " is not a virtsnap key (expected 'virtsnap-key-v1 <64 hex digits>')");
	};

	// Open first and check the mode on the descriptor, so the file checked
	// is the file read.
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
	if (!fd.isValid()) {
		int err = errno;
		if (err == ENOENT)
			return fail(errc::kKeyFile, "key file " + name + " does not exist");
		return fail(errc::kKeyFile, "key file " + name + ": " + std::strerror(err));
	}
	struct stat st;
	if (::fstat(fd.get(), &st) != 0)
		return fail(errc::kKeyFile, "key file " + name + ": " + std::strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(errc::kKeyFile, "key file " + name + " is not a regular file");
	if ((st.st_mode & 077) != 0)
		return fail(errc::kKeyFile, "key file " + name + " has mode " + octalMode(st.st_mode) +
						    "; it must be 0600 (chmod 600 " + name + ")");
	if (size_t(st.st_size) != kFileSize)
		return notAKey();

	// One byte more than a key file holds, to notice a file that grew
	// since fstat.
	WipedBuffer<kFileSize + 1> buf;
	size_t got = 0;
	while (got < sizeof buf.data) {
		ssize_t n = ::read(fd.get(), buf.data + got, sizeof buf.data - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return fail(errc::kKeyFile, "key file " + name + ": " + std::strerror(errno));
		}
		if (n == 0)
			break;
		got += size_t(n);
	}
	return parseKeyFile(std::string_view(buf.data, got), name);
}

Result<void> writeKeyFile(const std::filesystem::path &path, const SecretKey &key)
{
	const std::string name = path.string();
	fs::path dir = path.parent_path();
	if (dir.empty())
		dir = ".";
	VS_TRY(makeKeyDirs(dir));

	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600));
	if (!fd.isValid()) {
		if (errno == EEXIST)
			return fail(errc::kTargetExists, "key file " + name + " already exists");
		return failErrno("create key file " + name, errno);
	}
	// A partial key file would block the retry (O_EXCL) and look like a
	// key; remove it on any failure below.
	auto abandon = [&](std::unexpected<Error> err) {
		fd.reset();
		::unlink(path.c_str());
		return err;
	};
	// open() honours the umask, which can only narrow; fchmod makes the
	// mode exactly 0600 either way.
	if (::fchmod(fd.get(), 0600) != 0)
		return abandon(failErrno("chmod key file " + name, errno));

	WipedBuffer<kFileSize> buf;
	std::memcpy(buf.data, kMagic.data(), kMagic.size());
	static const char digits[] = "0123456789abcdef";
	auto bytes = key.bytes();
	for (size_t i = 0; i < kKeySize; i++) {
		buf.data[kMagic.size() + 2 * i] = digits[bytes[i] >> 4];
		buf.data[kMagic.size() + 2 * i + 1] = digits[bytes[i] & 15];
	}
	buf.data[kFileSize - 1] = '\n';
	auto written = writeAll(fd.get(), std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(buf.data), kFileSize));
	if (!written)
		return abandon(std::unexpected(Error{written.error().code,
						     "write key file " + name + ": " + written.error().message}));
	if (::fsync(fd.get()) != 0)
		return abandon(failErrno("fsync key file " + name, errno));
	if (::close(fd.release()) != 0) {
		int err = errno;
		::unlink(path.c_str());
		return failErrno("close key file " + name, err);
	}
	return fsyncDir(dir);
}

} // namespace virtsnap::crypto
