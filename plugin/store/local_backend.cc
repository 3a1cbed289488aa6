#include "local_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/file_util.h"

namespace virtsnap::store {

namespace fs = std::filesystem;

namespace {

// O_DIRECT wants buffer, offset and length aligned to the device's logical
// block size: 4096 covers 512-byte devices too.
constexpr size_t kDirectAlign = 4096;
constexpr size_t kStageBytes = 1u << 20;

// Key domains are 0600 like the master key; the store's config is for
// everyone who may open the directory; everything else for root and the
// store's group.
mode_t modeOf(const std::string &name)
{
	if (name.rfind("keys/", 0) == 0)
		return 0600;
	if (name == "config.json")
		return 0644;
	return 0640;
}

bool isTemporary(const fs::path &p)
{
	return p.filename().string().find(".tmp-") != std::string::npos;
}

std::chrono::system_clock::time_point mtimeOf(const struct stat &st)
{
	return std::chrono::system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec) +
						     std::chrono::nanoseconds(st.st_mtim.tv_nsec));
}

std::unexpected<Error> notFound(const std::string &name, const fs::path &path)
{
	return fail(errc::kObjectNotFound, "no object " + name + " (" + path.string() + ")");
}

// An object written through an aligned 1 MiB buffer, with O_DIRECT where
// the file system allows it: packs are written once and read rarely, so
// the page cache would only cost a copy per byte and memory taken from the
// host (and, on VMs that hand free memory back, a page fault each).
class FileWriter : public ObjectWriter
{
public:
	// The directory is there (LocalBackend::prepareDir).
	static Result<std::unique_ptr<FileWriter>> create(const fs::path &path, mode_t mode)
	{
		VS_ASSIGN(TempFile file, TempFile::create(path, mode));
		std::unique_ptr<FileWriter> w(new FileWriter(std::move(file)));
		w->stage_.reset(static_cast<uint8_t *>(std::aligned_alloc(kDirectAlign, kStageBytes)));
		if (!w->stage_)
			return fail(errc::kInternal, "no memory for a write buffer");
		// File systems without O_DIRECT (tmpfs) refuse the flag: buffered.
		int flags = ::fcntl(w->file_.fd(), F_GETFL);
		w->direct_ = flags >= 0 && ::fcntl(w->file_.fd(), F_SETFL, flags | O_DIRECT) == 0;
		return w;
	}

	Result<void> append(std::span<const uint8_t> bytes) override
	{
		size_ += bytes.size();
		while (!bytes.empty()) {
			size_t n = std::min(bytes.size(), kStageBytes - staged_);
			std::memcpy(stage_.get() + staged_, bytes.data(), n);
			staged_ += n;
			bytes = bytes.subspan(n);
			if (staged_ == kStageBytes)
				VS_TRY(flushStage(false));
		}
		return {};
	}

	Result<void> commit() override
	{
		if (staged_ > 0)
			VS_TRY(flushStage(true));
		// The last direct block went out padded: cut the file to its data.
		if (::ftruncate(file_.fd(), off_t(size_)) != 0)
			return failErrno("truncate " + file_.tempPath().string(), errno);
		if (!direct_) {
			// Buffered: durable first, then out of the page cache, for
			// the same reasons as O_DIRECT.
			if (::fdatasync(file_.fd()) != 0)
				return failErrno("fsync " + file_.tempPath().string(), errno);
			(void)::posix_fadvise(file_.fd(), 0, 0, POSIX_FADV_DONTNEED);
		}
		return file_.commit(true);
	}

	uint64_t size() const override { return size_; }

private:
	struct FreeAligned {
		void operator()(uint8_t *p) const { std::free(p); }
	};

	explicit FileWriter(TempFile file) : file_(std::move(file)) {}

	// Writes the staged bytes: a full buffer, or at the end the rest,
	// padded to the alignment when direct (commit() truncates the padding).
	Result<void> flushStage(bool last)
	{
		size_t length = staged_;
		if (direct_ && last && length % kDirectAlign) {
			size_t padded = (length + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
			std::memset(stage_.get() + length, 0, padded - length);
			length = padded;
		}
		for (size_t done = 0; done < length;) {
			ssize_t n = ::pwrite(file_.fd(), stage_.get() + done, length - done, off_t(written_ + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EINVAL && direct_ && done == 0) {
				// The file system took the flag but not the write.
				VS_TRY(stopDirect());
				continue;
			}
			if (n <= 0)
				return failErrno("write " + file_.tempPath().string(), n < 0 ? errno : EIO);
			done += size_t(n);
			if (direct_ && done < length && done % kDirectAlign) {
				// A short write off the alignment: go on buffered.
				VS_TRY(stopDirect());
			}
		}
		written_ += staged_; // the padding, if any, is cut at commit
		staged_ = 0;
		return {};
	}

	Result<void> stopDirect()
	{
		int flags = ::fcntl(file_.fd(), F_GETFL);
		if (flags < 0 || ::fcntl(file_.fd(), F_SETFL, flags & ~O_DIRECT) != 0)
			return failErrno("configure " + file_.tempPath().string(), errno);
		direct_ = false;
		return {};
	}

	TempFile file_;
	std::unique_ptr<uint8_t, FreeAligned> stage_;
	bool direct_ = false;
	size_t staged_ = 0;
	uint64_t written_ = 0; // bytes at which the next stage goes
	uint64_t size_ = 0;    // bytes appended
};

} // namespace

Result<fs::path> LocalBackend::pathOf(const std::string &name) const
{
	// Names come from the store's own code, but a name is never a way out
	// of the directory.
	if (name.empty() || name.front() == '/' || name.find("..") != std::string::npos ||
	    name.find('\0') != std::string::npos)
		return fail(errc::kInvalidParameterValue, "'" + name + "' is not an object name");
	return dir_ / name;
}

Result<void> LocalBackend::prepareDir(const fs::path &dir)
{
	{
		std::lock_guard lock(mutex_);
		if (durableDirs_.count(dir.string()))
			return {};
	}
	VS_TRY(makeDirs(dir, 0750));
	// "packs/ab": the entry of packs in the store's directory, then that of
	// ab in packs. Twice at worst, when two threads come at once.
	fs::path rel = dir.lexically_relative(dir_);
	if (rel != ".") {
		fs::path at = dir_;
		for (const fs::path &part : rel) {
			VS_TRY(fsyncDir(at));
			at /= part;
		}
	}
	std::lock_guard lock(mutex_);
	durableDirs_.insert(dir.string());
	return {};
}

Result<void> LocalBackend::write(const std::string &name, std::span<const uint8_t> data, bool overwrite)
{
	VS_ASSIGN(fs::path path, pathOf(name));
	VS_TRY(prepareDir(path.parent_path()));
	auto written = writeFileAtomic(path, data, modeOf(name), overwrite);
	if (!written && written.error().code == errc::kTargetExists)
		return fail(errc::kObjectExists, "object " + name + " exists (" + path.string() + ")");
	return written;
}

Result<void> LocalBackend::put(const std::string &name, std::span<const uint8_t> data)
{
	return write(name, data, true);
}

Result<void> LocalBackend::create(const std::string &name, std::span<const uint8_t> data)
{
	return write(name, data, false);
}

Result<std::unique_ptr<ObjectWriter>> LocalBackend::openWriter(const std::string &name)
{
	VS_ASSIGN(fs::path path, pathOf(name));
	VS_TRY(prepareDir(path.parent_path()));
	VS_ASSIGN(auto writer, FileWriter::create(path, modeOf(name)));
	return std::unique_ptr<ObjectWriter>(std::move(writer));
}

Result<Bytes> LocalBackend::get(const std::string &name)
{
	VS_ASSIGN(fs::path path, pathOf(name));
	auto data = readFile(path);
	if (!data && ::access(path.c_str(), F_OK) != 0 && errno == ENOENT)
		return notFound(name, path);
	return data;
}

Result<void> LocalBackend::getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out)
{
	VS_ASSIGN(fs::path path, pathOf(name));
	// A descriptor per read: an open costs microseconds, a read of
	// blobs milliseconds, and nothing is left to close or go stale.
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd.isValid()) {
		if (errno == ENOENT)
			return notFound(name, path);
		return failErrno("open " + path.string(), errno);
	}
	if (auto r = preadAll(fd.get(), out, offset); !r)
		return fail(r.error().code, "read " + path.string() + " at " + std::to_string(offset) + ": " +
						    r.error().message);
	// Readers of ranges read each blob once: the page cache need not keep it.
	(void)::posix_fadvise(fd.get(), off_t(offset), off_t(out.size()), POSIX_FADV_DONTNEED);
	return {};
}

Result<ObjectInfo> LocalBackend::stat(const std::string &name)
{
	VS_ASSIGN(fs::path path, pathOf(name));
	struct stat st;
	if (::lstat(path.c_str(), &st) != 0) {
		if (errno == ENOENT)
			return notFound(name, path);
		return failErrno("stat " + path.string(), errno);
	}
	if (!S_ISREG(st.st_mode))
		return fail(errc::kCorrupt, path.string() + " is not a regular file");
	return ObjectInfo{name, uint64_t(st.st_size), mtimeOf(st)};
}

Result<void> LocalBackend::list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit)
{
	// The deepest directory the prefix names, walked whole; symlinks and
	// temporary files are not objects.
	fs::path start = dir_ / prefix;
	if (!prefix.empty() && prefix.back() != '/')
		start = start.parent_path();
	std::error_code ec;
	if (!fs::exists(start, ec))
		return {};
	for (auto it = fs::recursive_directory_iterator(start, ec); !ec && it != fs::end(it); it.increment(ec)) {
		const fs::path &p = it->path();
		if (isTemporary(p))
			continue;
		std::string name = p.lexically_relative(dir_).string();
		if (name.rfind(prefix, 0) != 0)
			continue;
		struct stat st;
		if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		visit(ObjectInfo{name, uint64_t(st.st_size), mtimeOf(st)});
	}
	if (ec)
		return fail(errc::kIo, "list " + start.string() + ": " + ec.message());
	return {};
}

Result<void> LocalBackend::remove(const std::string &name)
{
	VS_ASSIGN(fs::path path, pathOf(name));
	if (::unlink(path.c_str()) != 0) {
		if (errno == ENOENT)
			return {};
		return failErrno("remove " + path.string(), errno);
	}
	return fsyncDir(path.parent_path());
}

Result<std::chrono::system_clock::time_point> LocalBackend::now()
{
	return std::chrono::system_clock::now();
}

Result<Backend::Swept> LocalBackend::sweepPartial(std::chrono::seconds grace, bool dryRun)
{
	Swept swept;
	auto cutoff = std::chrono::system_clock::now() - grace;
	std::error_code ec;
	for (auto it = fs::recursive_directory_iterator(dir_, fs::directory_options::skip_permission_denied, ec);
	     !ec && it != fs::end(it); it.increment(ec)) {
		const fs::path &p = it->path();
		struct stat st;
		if (!isTemporary(p) || ::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || mtimeOf(st) >= cutoff)
			continue;
		swept.objects++;
		swept.bytes += uint64_t(st.st_size);
		if (!dryRun && ::unlink(p.c_str()) != 0 && errno != ENOENT)
			return failErrno("remove " + p.string(), errno);
	}
	if (ec)
		return fail(errc::kIo, "list " + dir_.string() + ": " + ec.message());
	return swept;
}

} // namespace virtsnap::store
