// A private directory made with mkdtemp and removed, with everything in it,
// when its owner goes: owned from the moment it exists, so no early return
// between its creation and its hand-over can leave it behind.
#pragma once

#include <filesystem>
#include <string>

#include "error.h"

namespace virtsnap {

class ScratchDir
{
public:
	// PARENT/PREFIXXXXXXX, mode 0700.
	static Result<ScratchDir> create(const std::filesystem::path &parent, const std::string &prefix);
	ScratchDir(ScratchDir &&other) noexcept;
	ScratchDir &operator=(ScratchDir &&other) noexcept;
	ScratchDir(const ScratchDir &) = delete;
	ScratchDir &operator=(const ScratchDir &) = delete;
	~ScratchDir();

	const std::filesystem::path &path() const { return path_; }

private:
	explicit ScratchDir(std::filesystem::path path) : path_(std::move(path)) {}
	void remove();

	std::filesystem::path path_; // empty once moved from
};

} // namespace virtsnap
