// Sets of grid slots kept as sorted, disjoint [first, end) runs: what a
// capture may read, held in memory that grows with how fragmented the
// change is, not with the disk's size (a bit per slot of a 64 TiB disk at
// 64 KiB chunks is 128 MiB per set).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace virtsnap::engine {

struct SlotRun {
	uint64_t first = 0;
	uint64_t end = 0; // exclusive
	bool operator==(const SlotRun &) const = default;
};

// Only for sets of slots that MAY need reading: past `cap` runs, runs are
// joined across their smallest gaps, so the set can grow (never shrink).
// Reading a slot that did not need it is always correct, it only costs
// work: clean data is read again and dedups to the id it had, and a hole
// reads as zeros and gets the zero id it had. Never act on a set's slots
// without asking the export about them: the incremental's dirty runs may
// hold clean slots, which is correct only because each is then read, or
// cleared where the export itself says it is a hole now.
class SlotRuns
{
public:
	// 1 M runs: 16 MiB.
	static constexpr size_t kDefaultCap = size_t(1) << 20;

	explicit SlotRuns(size_t cap = kDefaultCap);

	// Adds [first, end), joining runs it touches or overlaps. Adding in
	// ascending order (as extents come) appends; any order is correct.
	void add(uint64_t first, uint64_t end);

	const std::vector<SlotRun> &runs() const { return runs_; }
	bool empty() const { return runs_.empty(); }
	size_t size() const { return runs_.size(); }
	// Slots covered.
	uint64_t slots() const;
	// Gaps of at most this many slots are joined (0: only touching runs).
	uint64_t bridgedGap() const { return bridged_; }

private:
	// Whether a run ending at `end` and one starting at `first` stay two.
	bool apart(uint64_t end, uint64_t first) const;
	// Joins runs across the smallest gaps until at most half the cap is
	// left, so that the next coalescing is cap/2 adds away and the
	// vector never holds more than the cap.
	void coalesce();

	size_t cap_;
	uint64_t bridged_ = 0;
	std::vector<SlotRun> runs_;
};

} // namespace virtsnap::engine
