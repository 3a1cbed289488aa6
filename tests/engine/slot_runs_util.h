// The copy tests describe wanted slots as a mask: one line each to read.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/slot_runs.h"

namespace virtsnap::test {

// The runs of a test's mask of wanted slots.
inline engine::SlotRuns runsOf(const std::vector<bool> &wanted)
{
	engine::SlotRuns runs;
	for (uint64_t s = 0; s < wanted.size(); s++)
		if (wanted[s])
			runs.add(s, s + 1);
	return runs;
}

} // namespace virtsnap::test
