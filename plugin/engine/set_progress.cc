#include "set_progress.h"

namespace virtsnap::engine {

SetProgress::SetProgress(std::vector<uint64_t> sizes, ProgressFn progress)
	: progress_(std::move(progress)), sizes_(std::move(sizes)), done_(sizes_.size(), 0)
{
	for (uint64_t size : sizes_)
		total_ += size;
}

ProgressFn SetProgress::of(size_t disk)
{
	if (!progress_)
		return {};
	return [this, disk](uint64_t done, uint64_t total) {
		uint64_t size = sizes_[disk];
		report(disk, total ? done * size / total : size);
	};
}

void SetProgress::finished()
{
	if (!progress_)
		return;
	for (size_t i = 0; i < sizes_.size(); i++)
		report(i, sizes_[i]);
}

void SetProgress::report(size_t disk, uint64_t scaled)
{
	std::lock_guard lock(mutex_);
	if (scaled <= done_[disk])
		return;
	reported_ += scaled - done_[disk];
	done_[disk] = scaled;
	progress_(reported_, total_);
}

} // namespace virtsnap::engine
