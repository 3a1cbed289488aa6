// Progress over a set whose disks are copied side by side: each disk
// reports within its size, and the sum goes on only when it grew, so the
// set's progress never goes back whichever copy or worker reports first.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "snapshot_engine.h"

namespace virtsnap::engine {

class SetProgress
{
public:
	// `sizes`: each disk's, in the set's order.
	SetProgress(std::vector<uint64_t> sizes, ProgressFn progress);

	// For disk `disk`'s copy (empty when nobody listens).
	ProgressFn of(size_t disk);
	// Every disk is copied: 100%, whether or not the copies said so (a
	// clean incremental reads nothing, so reports nothing).
	void finished();

private:
	void report(size_t disk, uint64_t scaled);

	ProgressFn progress_;
	std::vector<uint64_t> sizes_;
	uint64_t total_ = 0;
	std::mutex mutex_; // held while progress_ runs, so calls arrive in order
	std::vector<uint64_t> done_;
	uint64_t reported_ = 0;
};

} // namespace virtsnap::engine
