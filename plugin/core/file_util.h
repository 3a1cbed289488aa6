// Durable file operations. Everything the store makes visible goes through
// writeFileAtomic or TempFile::commit: write to a temporary name, fsync,
// rename into place, fsync the directory. A crash leaves the old state or
// the new one, plus a temporary file that gc removes.
#pragma once

#include <filesystem>
#include <span>
#include <string>

#include "bytes.h"
#include "error.h"
#include "unique_fd.h"

namespace virtsnap {

namespace fs = std::filesystem;

Result<void> fsyncDir(const fs::path &dir);
Result<void> makeDirs(const fs::path &dir, mode_t mode = 0755);
Result<Bytes> readFile(const fs::path &path);
// Fails with TargetExists if `path` exists and `overwrite` is false.
Result<void> writeFileAtomic(const fs::path &path, std::span<const uint8_t> data,
			     mode_t mode = 0644, bool overwrite = true);
Result<void> writeAll(int fd, std::span<const uint8_t> data);
Result<void> preadAll(int fd, std::span<uint8_t> out, uint64_t offset);
Result<void> pwriteAll(int fd, std::span<const uint8_t> data, uint64_t offset);

// A file written under a temporary name in the target's directory: removed
// if destroyed before commit(), renamed into place (durably) by commit().
class TempFile
{
public:
	static Result<TempFile> create(const fs::path &finalPath, mode_t mode = 0644);
	TempFile(TempFile &&) = default;
	// Drops (removes) the file this one held unless it was committed.
	TempFile &operator=(TempFile &&other) noexcept;
	~TempFile();

	int fd() const { return fd_.get(); }
	const fs::path &tempPath() const { return tempPath_; }
	// fsync, rename over finalPath (or fail with TargetExists when
	// !overwrite and it exists), fsync the directory.
	Result<void> commit(bool overwrite = true);
	// fsync only: the file is durable under tempPath().
	Result<void> sync();
	// Stops owning the file, which stays under tempPath(): for a journal
	// that names it and renames it into place later.
	void keep();

private:
	TempFile() = default;
	UniqueFd fd_;
	fs::path tempPath_;
	fs::path finalPath_;
	bool committed_ = false;
};

} // namespace virtsnap
