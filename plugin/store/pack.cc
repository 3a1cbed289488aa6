#include "pack.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include <cstring>

namespace virtsnap::store {

namespace {

constexpr char kPackMagic[8] = {'V', 'S', 'P', 'A', 'C', 'K', '0', '1'};
constexpr size_t kEntrySize = 32 + 4 + 8 + 4 + 4;
// O_DIRECT wants buffer, offset and length aligned to the device's logical
// block size: 4096 covers 512-byte devices too.
constexpr size_t kDirectAlign = 4096;
constexpr size_t kStageBytes = 1u << 20;

fs::path packDir(const fs::path &storeDir, const PackId &id)
{
	return storeDir / "packs" / toHex(std::span(id).first(1));
}

} // namespace

fs::path packPath(const fs::path &storeDir, const PackId &id)
{
	return packDir(storeDir, id) / (toHex(id) + ".pack");
}

fs::path packIndexPath(const fs::path &storeDir, const PackId &id)
{
	return packDir(storeDir, id) / (toHex(id) + ".idx");
}

Bytes serializePackIndex(const PackIndex &index)
{
	Bytes out(16 + 4 + index.entries.size() * kEntrySize);
	uint8_t *p = out.data();
	std::memcpy(p, index.packId.data(), 16);
	putLe32(p + 16, uint32_t(index.entries.size()));
	p += 20;
	for (const PackEntry &e : index.entries) {
		std::memcpy(p, e.id.data(), 32);
		p[32] = uint8_t(e.type);
		p[33] = e.flags;
		p[34] = p[35] = 0;
		putLe64(p + 36, e.offset);
		putLe32(p + 44, e.length);
		putLe32(p + 48, e.rawLength);
		p += kEntrySize;
	}
	return out;
}

Result<PackIndex> parsePackIndex(std::span<const uint8_t> data)
{
	if (data.size() < 20)
		return fail(errc::kCorrupt, "pack index is truncated");
	PackIndex index;
	std::memcpy(index.packId.data(), data.data(), 16);
	uint32_t count = getLe32(data.data() + 16);
	if (data.size() != 20 + size_t(count) * kEntrySize)
		return fail(errc::kCorrupt, "pack index " + toHex(index.packId) + " has a wrong size");
	index.entries.resize(count);
	const uint8_t *p = data.data() + 20;
	for (PackEntry &e : index.entries) {
		std::memcpy(e.id.data(), p, 32);
		e.type = ChunkType(p[32]);
		e.flags = p[33];
		e.offset = getLe64(p + 36);
		e.length = getLe32(p + 44);
		e.rawLength = getLe32(p + 48);
		p += kEntrySize;
	}
	return index;
}

Result<PackWriter> PackWriter::create(const fs::path &storeDir)
{
	PackId id;
	VS_TRY(crypto::randomBytes(id));
	fs::path path = packPath(storeDir, id);
	VS_TRY(makeDirs(path.parent_path()));
	VS_ASSIGN(auto file, TempFile::create(path));
	PackWriter w(storeDir, std::move(file));
	w.index_.packId = id;
	// File systems without O_DIRECT (tmpfs) refuse the flag: buffered then.
	int flags = ::fcntl(w.file_.fd(), F_GETFL);
	if (flags >= 0 && ::fcntl(w.file_.fd(), F_SETFL, flags | O_DIRECT) == 0) {
		w.stage_.reset(static_cast<uint8_t *>(std::aligned_alloc(kDirectAlign, kStageBytes)));
		if (!w.stage_)
			VS_TRY(w.stopDirect());
	}
	uint8_t header[kPackHeaderSize];
	std::memcpy(header, kPackMagic, 8);
	std::memcpy(header + 8, id.data(), 16);
	VS_TRY(w.write(header));
	w.size_ = kPackHeaderSize;
	return w;
}

Result<void> PackWriter::stopDirect()
{
	int flags = ::fcntl(file_.fd(), F_GETFL);
	if (flags < 0 || ::fcntl(file_.fd(), F_SETFL, flags & ~O_DIRECT) != 0)
		return failErrno("configure " + file_.tempPath().string(), errno);
	// Buffered writes append at the file offset; direct ones used pwrite.
	if (::lseek(file_.fd(), off_t(written_), SEEK_SET) < 0)
		return failErrno("seek " + file_.tempPath().string(), errno);
	if (staged_ > 0) {
		VS_TRY(writeAll(file_.fd(), std::span<const uint8_t>(stage_.get(), staged_)));
		written_ += staged_;
		staged_ = 0;
	}
	stage_.reset();
	return {};
}

Result<void> PackWriter::flushStage(bool last)
{
	size_t length = staged_;
	if (last && length % kDirectAlign) {
		size_t padded = (length + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
		std::memset(stage_.get() + length, 0, padded - length);
		length = padded;
	}
	for (size_t done = 0; done < length;) {
		ssize_t n = ::pwrite(file_.fd(), stage_.get() + done, length - done, off_t(written_ + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && done == 0 && written_ == 0) {
			// The file system took the flag but not the write: buffered.
			return stopDirect();
		}
		if (n <= 0)
			return failErrno("write " + file_.tempPath().string(), n < 0 ? errno : EIO);
		done += size_t(n);
		if (done < length && done % kDirectAlign) {
			// A short write off the alignment: finish it buffered (the
			// padding it may have written goes with finish's truncate).
			size_t real = std::min(done, staged_);
			written_ += real;
			std::memmove(stage_.get(), stage_.get() + real, staged_ - real);
			staged_ -= real;
			return stopDirect();
		}
	}
	written_ += length;
	staged_ = 0;
	return {};
}

Result<void> PackWriter::write(std::span<const uint8_t> bytes)
{
	if (!stage_) {
		VS_TRY(writeAll(file_.fd(), bytes));
		written_ += bytes.size();
		return {};
	}
	while (!bytes.empty()) {
		size_t n = std::min(bytes.size(), kStageBytes - staged_);
		std::memcpy(stage_.get() + staged_, bytes.data(), n);
		staged_ += n;
		bytes = bytes.subspan(n);
		if (staged_ == kStageBytes)
			VS_TRY(flushStage(false));
		if (!stage_)
			return write(bytes);
	}
	return {};
}

Result<void> PackWriter::append(const ChunkId &id, ChunkType type, uint8_t flags, uint32_t rawLength,
				std::span<const uint8_t> blob)
{
	VS_TRY(write(blob));
	index_.entries.push_back(PackEntry{id, type, flags, size_, uint32_t(blob.size()), rawLength});
	size_ += blob.size();
	return {};
}

Result<void> PackWriter::appendMany(std::span<const Append> blobs)
{
	if (stage_) {
		for (const Append &a : blobs)
			VS_TRY(append(a.id, a.type, a.flags, a.rawLength, a.blob));
		return {};
	}
	// Buffered: writev takes at most IOV_MAX pieces; a partial write goes
	// on from where it stopped.
	std::vector<struct iovec> iov;
	for (size_t first = 0; first < blobs.size();) {
		size_t n = std::min<size_t>(blobs.size() - first, IOV_MAX);
		iov.clear();
		for (size_t i = first; i < first + n; i++)
			iov.push_back({const_cast<uint8_t *>(blobs[i].blob.data()), blobs[i].blob.size()});
		size_t at = 0;
		while (at < iov.size()) {
			ssize_t w = ::writev(file_.fd(), iov.data() + at, int(iov.size() - at));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return failErrno("write " + file_.tempPath().string(), errno);
			}
			written_ += uint64_t(w);
			size_t left = size_t(w);
			while (at < iov.size() && left >= iov[at].iov_len)
				left -= iov[at++].iov_len;
			if (left > 0) {
				iov[at].iov_base = static_cast<uint8_t *>(iov[at].iov_base) + left;
				iov[at].iov_len -= left;
			}
		}
		for (size_t i = first; i < first + n; i++) {
			const Append &a = blobs[i];
			index_.entries.push_back(
				PackEntry{a.id, a.type, a.flags, size_, uint32_t(a.blob.size()), a.rawLength});
			size_ += a.blob.size();
		}
		first += n;
	}
	return {};
}

Result<PackIndex> PackWriter::finish(const KeyDomain &domain)
{
	if (stage_ && staged_ > 0)
		VS_TRY(flushStage(true));
	// The last direct block went out padded: cut the file to its blobs.
	if (::ftruncate(file_.fd(), off_t(size_)) != 0)
		return failErrno("truncate " + file_.tempPath().string(), errno);
	if (!stage_) {
		// Buffered: durable first, then out of the page cache, for the
		// same reasons as O_DIRECT (commit's fsync then has nothing left
		// to write).
		if (::fdatasync(file_.fd()) != 0)
			return failErrno("fsync " + file_.tempPath().string(), errno);
		(void)::posix_fadvise(file_.fd(), 0, 0, POSIX_FADV_DONTNEED);
	}
	VS_TRY(file_.commit());
	auto sealed = sealObject(ObjectType::PackIndex, domain.id, domain.encKey, toHex(index_.packId),
				 serializePackIndex(index_));
	if (!sealed)
		return std::unexpected(sealed.error());
	VS_TRY(writeFileAtomic(packIndexPath(storeDir_, index_.packId), *sealed));
	return std::move(index_);
}

} // namespace virtsnap::store
