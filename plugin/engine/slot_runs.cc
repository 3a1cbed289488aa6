#include "slot_runs.h"

#include <algorithm>

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
	// The gap below which every gap is joined: the one that leaves cap/2
	// runs. Gaps equal to it are joined only as far as needed (first ones
	// first), so that a disk changed in an even pattern, all of its gaps
	// alike, does not become one run. The gaps are a transient copy of
	// 8 bytes per run.
	std::vector<uint64_t> gaps(runs_.size() - 1);
	for (size_t i = 1; i < runs_.size(); i++)
		gaps[i - 1] = runs_[i].first - runs_[i - 1].end;
	size_t joins = runs_.size() - cap_ / 2;
	std::nth_element(gaps.begin(), gaps.begin() + long(joins - 1), gaps.end());
	const uint64_t limit = gaps[joins - 1];
	gaps = {};
	for (size_t i = 1; i < runs_.size(); i++)
		joins -= runs_[i].first - runs_[i - 1].end < limit;
	size_t out = 0;
	for (size_t i = 1; i < runs_.size(); i++) {
		uint64_t gap = runs_[i].first - runs_[out].end;
		if (gap < limit || (gap == limit && joins > 0)) {
			joins -= gap == limit;
			runs_[out].end = runs_[i].end;
		} else {
			runs_[++out] = runs_[i];
		}
	}
	runs_.resize(out + 1);
	bridged_ = std::max(bridged_, limit - 1);
}

} // namespace virtsnap::engine
