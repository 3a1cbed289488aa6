#include "direct_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace virtsnap::engine {

void FreeAligned::operator()(uint8_t *p) const
{
	std::free(p);
}

AlignedBuffer allocateAligned(size_t alignment, size_t bytes)
{
	bytes = (bytes + alignment - 1) / alignment * alignment;
	return AlignedBuffer(static_cast<uint8_t *>(std::aligned_alloc(alignment, bytes)));
}

DirectFile::DirectFile(int fd) : fd_(fd)
{
	struct stat st {};
	if (::fstat(fd_, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
		return;
	int sectorSize = 0;
	// 4096 also covers 512-byte devices; a device with larger logical
	// blocks says so.
	if (S_ISBLK(st.st_mode) && ::ioctl(fd_, BLKSSZGET, &sectorSize) == 0 && size_t(sectorSize) > alignment_)
		alignment_ = size_t(sectorSize);
	originalFlags_ = ::fcntl(fd_, F_GETFL);
	// File systems without O_DIRECT (ramfs; tmpfs before Linux 6.6)
	// refuse the flag: buffered.
	direct_ = originalFlags_ >= 0 && ::fcntl(fd_, F_SETFL, originalFlags_ | O_DIRECT) == 0;
}

DirectFile::~DirectFile()
{
	if (direct_)
		(void)::fcntl(fd_, F_SETFL, originalFlags_);
}

Result<void> DirectFile::write(std::span<const uint8_t> data, uint64_t offset)
{
	if (!direct_)
		return writeRun(data, offset);
	size_t whole = data.size() / alignment_ * alignment_;
	if (offset % alignment_ != 0 || uintptr_t(data.data()) % alignment_ != 0)
		whole = 0;
	if (whole > 0)
		VS_TRY(writeRun(data.first(whole), offset));
	if (whole < data.size()) {
		std::lock_guard lock(mutex_);
		tails_.push_back({offset + whole, {data.begin() + long(whole), data.end()}});
	}
	return {};
}

Result<void> DirectFile::finish()
{
	std::lock_guard lock(mutex_);
	if (tails_.empty())
		return {};
	if (direct_ && ::fcntl(fd_, F_SETFL, originalFlags_) != 0)
		return failErrno("configure the new volume", errno);
	direct_ = false;
	for (const Tail &t : tails_) {
		for (std::span<const uint8_t> rest(t.bytes); !rest.empty();) {
			ssize_t n = ::pwrite(fd_, rest.data(), rest.size(), off_t(t.offset + (t.bytes.size() - rest.size())));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return failErrno("write", n < 0 ? errno : EIO);
			rest = rest.subspan(size_t(n));
		}
	}
	tails_.clear();
	return {};
}

// Aligned when direct; a file system that took the flag but refuses the
// write (EINVAL), or a short write off the alignment, turns it off for
// the rest.
Result<void> DirectFile::writeRun(std::span<const uint8_t> data, uint64_t offset)
{
	for (size_t done = 0; done < data.size();) {
		bool wasDirect = direct_;
		ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, off_t(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && wasDirect) {
			VS_TRY(stopDirect());
			continue;
		}
		if (n <= 0)
			return failErrno("write", n < 0 ? errno : EIO);
		done += size_t(n);
		if (direct_ && done < data.size() && done % alignment_ != 0)
			VS_TRY(stopDirect());
	}
	return {};
}

Result<void> DirectFile::stopDirect()
{
	std::lock_guard lock(mutex_);
	if (!direct_)
		return {};
	if (::fcntl(fd_, F_SETFL, originalFlags_) != 0)
		return failErrno("configure the new volume", errno);
	direct_ = false;
	return {};
}

} // namespace virtsnap::engine
