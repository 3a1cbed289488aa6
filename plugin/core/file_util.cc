#include "file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include "bytes.h"

namespace virtsnap {

Result<void> fsyncDir(const fs::path &dir)
{
	UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	if (!fd.isValid())
		return failErrno("open " + dir.string(), errno);
	if (::fsync(fd.get()) != 0)
		return failErrno("fsync " + dir.string(), errno);
	return {};
}

Result<void> makeDirs(const fs::path &dir, mode_t mode)
{
	if (dir.empty())
		return {};
	struct stat st;
	if (::stat(dir.c_str(), &st) == 0)
		return S_ISDIR(st.st_mode) ? Result<void>{} : fail(errc::kIo, dir.string() + " is not a directory");
	VS_TRY(makeDirs(dir.parent_path(), mode));
	if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST)
		return failErrno("mkdir " + dir.string(), errno);
	return fsyncDir(dir.parent_path().empty() ? fs::path(".") : dir.parent_path());
}

Result<Bytes> readFile(const fs::path &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd.isValid())
		return failErrno("open " + path.string(), errno);
	struct stat st;
	if (::fstat(fd.get(), &st) != 0)
		return failErrno("stat " + path.string(), errno);
	Bytes data(size_t(st.st_size));
	VS_TRY(preadAll(fd.get(), data, 0));
	return data;
}

Result<void> writeAll(int fd, std::span<const uint8_t> data)
{
	while (!data.empty()) {
		ssize_t n = ::write(fd, data.data(), data.size());
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return failErrno("write", errno);
		}
		data = data.subspan(size_t(n));
	}
	return {};
}

Result<void> preadAll(int fd, std::span<uint8_t> out, uint64_t offset)
{
	while (!out.empty()) {
		ssize_t n = ::pread(fd, out.data(), out.size(), off_t(offset));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return failErrno("read", errno);
		}
		if (n == 0)
			return fail(errc::kCorrupt, "unexpected end of file at offset " + std::to_string(offset));
		out = out.subspan(size_t(n));
		offset += uint64_t(n);
	}
	return {};
}

Result<void> pwriteAll(int fd, std::span<const uint8_t> data, uint64_t offset)
{
	while (!data.empty()) {
		ssize_t n = ::pwrite(fd, data.data(), data.size(), off_t(offset));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return failErrno("write", errno);
		}
		data = data.subspan(size_t(n));
		offset += uint64_t(n);
	}
	return {};
}

Result<void> writeFileAtomic(const fs::path &path, std::span<const uint8_t> data, mode_t mode,
			     bool overwrite)
{
	VS_ASSIGN(TempFile tmp, TempFile::create(path, mode));
	if (auto r = writeAll(tmp.fd(), data); !r)
		return std::unexpected(Error{r.error().code, "write " + path.string() + ": " + r.error().message});
	return tmp.commit(overwrite);
}

Result<TempFile> TempFile::create(const fs::path &finalPath, mode_t mode)
{
	static thread_local std::mt19937_64 rng{std::random_device{}()};
	uint8_t suffix[8];
	putLe64(suffix, rng());
	TempFile t;
	t.finalPath_ = finalPath;
	t.tempPath_ = finalPath;
	t.tempPath_ += ".tmp-" + toHex(suffix);
	t.fd_ = UniqueFd(::open(t.tempPath_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode));
	if (!t.fd_.isValid())
		return failErrno("create " + t.tempPath_.string(), errno);
	return t;
}

TempFile::~TempFile()
{
	if (!committed_ && !tempPath_.empty() && fd_.isValid())
		::unlink(tempPath_.c_str());
}

TempFile &TempFile::operator=(TempFile &&other) noexcept
{
	if (this != &other) {
		if (!committed_ && !tempPath_.empty() && fd_.isValid())
			::unlink(tempPath_.c_str());
		fd_ = std::move(other.fd_);
		tempPath_ = std::move(other.tempPath_);
		finalPath_ = std::move(other.finalPath_);
		committed_ = other.committed_;
	}
	return *this;
}

Result<void> TempFile::sync()
{
	if (::fsync(fd_.get()) != 0)
		return failErrno("fsync " + tempPath_.string(), errno);
	return {};
}

void TempFile::keep()
{
	committed_ = true;
	fd_.reset();
}

Result<void> TempFile::commit(bool overwrite)
{
	VS_TRY(sync());
	if (overwrite) {
		if (::rename(tempPath_.c_str(), finalPath_.c_str()) != 0)
			return failErrno("rename to " + finalPath_.string(), errno);
	} else {
		// link() fails with EEXIST instead of replacing, unlike rename().
		if (::link(tempPath_.c_str(), finalPath_.c_str()) != 0) {
			if (errno == EEXIST)
				return fail(errc::kTargetExists, finalPath_.string() + " already exists");
			return failErrno("link to " + finalPath_.string(), errno);
		}
		::unlink(tempPath_.c_str());
	}
	committed_ = true;
	fd_.reset();
	auto dir = finalPath_.parent_path();
	return fsyncDir(dir.empty() ? fs::path(".") : dir);
}

} // namespace virtsnap
