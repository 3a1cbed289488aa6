// A private directory for what a capture puts on disk: scratch overlays and
// the NBD socket. Short (unix socket paths are limited to 108 bytes, store
// paths are not), under $TMPDIR or /tmp, removed with everything in it.
#pragma once

#include <filesystem>
#include <memory>

#include "core/error.h"

namespace virtsnap::engine {

class WorkDir
{
public:
	static Result<std::unique_ptr<WorkDir>> create();
	~WorkDir();
	WorkDir(const WorkDir &) = delete;
	WorkDir &operator=(const WorkDir &) = delete;
	const std::filesystem::path &path() const { return path_; }

private:
	explicit WorkDir(std::filesystem::path path) : path_(std::move(path)) {}
	std::filesystem::path path_;
};

} // namespace virtsnap::engine
