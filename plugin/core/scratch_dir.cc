#include "scratch_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <utility>

namespace virtsnap {

namespace fs = std::filesystem;

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
	std::error_code ec;
	fs::remove_all(path_, ec); // best effort: a destructor has no one to tell
	path_.clear();
}

} // namespace virtsnap
