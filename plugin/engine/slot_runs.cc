#include "slot_runs.h"

#include <algorithm>
#include <array>
#include <bit>

namespace virtsnap::engine {

SlotRuns::SlotRuns(size_t cap) : cap_(std::max<size_t>(cap, 2)) {}

bool SlotRuns::apart(uint64_t end, uint64_t first) const
{
	return first > end && first - end > bridged_;
}

void SlotRuns::add(uint64_t first, uint64_t end)
{
	if (first >= end)
		return;
	// Before inserting, so that the vector never grows past the cap.
	if (runs_.size() >= cap_)
		coalesce();
	// The common case: at or past the last run.
	if (runs_.empty() || (first >= runs_.back().first && apart(runs_.back().end, first))) {
		runs_.push_back({first, end});
		return;
	}
	if (first >= runs_.back().first) {
		runs_.back().end = std::max(runs_.back().end, end);
		return;
	}
	// Out of order: the runs from the first one it reaches (within the
	// bridged gap) to the last it reaches become one.
	auto from = std::partition_point(runs_.begin(), runs_.end(),
					 [&](const SlotRun &r) { return apart(r.end, first); });
	auto to = std::partition_point(from, runs_.end(), [&](const SlotRun &r) { return !apart(end, r.first); });
	if (from == to) {
		runs_.insert(from, {first, end});
		return;
	}
	SlotRun joined{std::min(first, from->first), std::max(end, (to - 1)->end)};
	*from = joined;
	runs_.erase(from + 1, to);
}

uint64_t SlotRuns::slots() const
{
	uint64_t n = 0;
	for (const SlotRun &r : runs_)
		n += r.end - r.first;
	return n;
}

void SlotRuns::coalesce()
{
	// Gaps by their bit width: joining every gap up to 2^b - 1 for the
	// smallest b that leaves cap/2 runs bridges at most twice the gap an
	// exact choice would, in two passes and no memory.
	std::array<uint64_t, 65> byWidth{};
	for (size_t i = 1; i < runs_.size(); i++)
		byWidth[std::bit_width(runs_[i].first - runs_[i - 1].end)]++;
	const uint64_t joins = runs_.size() - cap_ / 2;
	uint64_t count = 0;
	unsigned width = 0;
	while (width < 64 && (count += byWidth[width]) < joins)
		width++;
	uint64_t limit = width >= 64 ? UINT64_MAX : (uint64_t(1) << width) - 1;
	bridged_ = std::max(bridged_, limit);
	size_t out = 0;
	for (size_t i = 1; i < runs_.size(); i++) {
		if (!apart(runs_[out].end, runs_[i].first))
			runs_[out].end = std::max(runs_[out].end, runs_[i].end);
		else
			runs_[++out] = runs_[i];
	}
	runs_.resize(out + 1);
}

} // namespace virtsnap::engine
