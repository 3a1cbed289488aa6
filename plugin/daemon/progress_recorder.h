// A job's progress into its catalog rows (describe-snapshots' Progress):
// at most every half second, and only while a row is pending (a row a
// delete removed stays removed).
#pragma once

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "engine/snapshot_engine.h"

namespace virtsnap::daemon {

class ProgressRecorder
{
public:
	ProgressRecorder(catalog::Catalog &catalog, std::vector<std::string> ids, engine::ProgressFn also)
		: catalog_(catalog), ids_(std::move(ids)), also_(std::move(also))
	{
	}

	void operator()(uint64_t done, uint64_t total)
	{
		if (also_)
			also_(done, total);
		int pct = total ? int(done * 100 / total) : 100;
		std::lock_guard lock(mutex_);
		auto now = std::chrono::steady_clock::now();
		if (pct == lastPct_ || now - lastWrite_ < std::chrono::milliseconds(500))
			return;
		lastPct_ = pct;
		lastWrite_ = now;
		for (const std::string &id : ids_)
			(void)catalog_.transaction([&]() -> Result<void> { // progress is advisory
				VS_ASSIGN(auto row, catalog_.getSnapshot(id));
				if (!row || row->state != SnapshotState::Pending)
					return {};
				row->progress = std::min(pct, 99);
				return catalog_.putSnapshot(*row);
			});
	}

private:
	catalog::Catalog &catalog_;
	std::vector<std::string> ids_;
	engine::ProgressFn also_;
	std::mutex mutex_;
	std::chrono::steady_clock::time_point lastWrite_ = std::chrono::steady_clock::now();
	int lastPct_ = -1;
};

} // namespace virtsnap::daemon
