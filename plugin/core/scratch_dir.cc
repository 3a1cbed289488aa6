#include "scratch_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <utility>

namespace virtsnap {

namespace fs = std::filesystem;

namespace {

// Whoever else writes in the directory (QEMU, libvirt) may be removing its
// own files meanwhile, which makes std::filesystem::remove_all give up at
// the first entry that vanishes under it. Here that is no error; a file
// created meanwhile fails the last rmdir, and a try again takes it.
constexpr int kRemoveTries = 5;

void removeTree(const fs::path &dir, std::error_code &ec)
{
	for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
		std::error_code entry;
		if (it->is_directory(entry) && !it->is_symlink(entry))
			removeTree(it->path(), entry);
		else
			fs::remove(it->path(), entry); // a vanished entry is not an error
	}
	if (ec == std::errc::no_such_file_or_directory)
		ec.clear(); // gone already
	else if (!ec)
		fs::remove(dir, ec);
}

} // namespace

Result<ScratchDir> ScratchDir::create(const fs::path &parent, const std::string &prefix)
{
	std::string pattern = (parent / (prefix + "XXXXXX")).string();
	if (!::mkdtemp(pattern.data()))
		return failErrno("create a scratch directory in " + parent.string(), errno);
	return ScratchDir(fs::path(pattern));
}

ScratchDir::ScratchDir(ScratchDir &&other) noexcept : path_(std::exchange(other.path_, {})) {}

ScratchDir &ScratchDir::operator=(ScratchDir &&other) noexcept
{
	if (this != &other) {
		remove();
		path_ = std::exchange(other.path_, {});
	}
	return *this;
}

ScratchDir::~ScratchDir()
{
	remove();
}

void ScratchDir::remove()
{
	if (path_.empty())
		return;
	// Best effort past the tries: a destructor has no one to tell.
	for (int tries = 0; tries < kRemoveTries; tries++) {
		std::error_code ec;
		removeTree(path_, ec);
		if (!ec)
			break;
	}
	path_.clear();
}

} // namespace virtsnap
