// The CrossStoreCopyRules of one run of a lifecycle policy's schedule:
// each snapshot the run made, copied into each rule's target store
// (store_targets.h), then each rule's RetainRule applied in its target.
//
// A copy carries the policy's id and the schedule's name as DLM tags, the
// source's volume as virtsnap:source-volume-id (a copy's own volume is
// EBS's vol-ffffffff, so its lineage in the target is that tag), and with
// CopyTags the source's tags. Retention in a target sees only the copies
// there carrying both DLM tags (retentionMayDelete), per source volume,
// and deletes one only once a newer copy of that volume has completed
// there; a locked copy is kept.
//
// A target that cannot be reached fails the copies into it, not the
// others; the run then fails, and a failed run deletes nothing anywhere.
// The next run copies its own snapshots: incremental against the newest
// copy of their parent the target holds, and what the target holds
// already costs it nothing (dedup), so nothing is lost by not retrying.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "context.h"
#include "lifecycle_policy.h"
#include "store/store.h"

namespace virtsnap::daemon {

// The tag naming a copy's source volume in its target store.
inline constexpr const char *kSourceVolumeTag = "virtsnap:source-volume-id";

class PolicyCopies
{
public:
	PolicyCopies(Context &ctx, const catalog::PolicyRow &row, const PolicySchedule &schedule)
		: ctx_(ctx), row_(row), schedule_(schedule)
	{
	}

	// Copies each snapshot (completed, made by this run) into each rule's
	// target; tries every one, and fails with the first failure.
	Result<void> copy(const std::vector<std::string> &snapshotIds);
	// Each rule's RetainRule in its target store, at `now`.
	Result<void> retire(UtcTime now);

	// What was copied or tried, and what retention deleted, as the run's
	// record keeps them (catalog::PolicyRunRow::copies, deletedCopies).
	const Json &copies() const { return copies_; }
	const Json &deleted() const { return deleted_; }

private:
	Result<store::Store *> target(const CrossStoreCopyRule &rule);
	Result<void> copyOne(const CrossStoreCopyRule &rule, const std::string &snapshotId);
	Result<void> retireIn(const CrossStoreCopyRule &rule, UtcTime now);

	Context &ctx_;
	const catalog::PolicyRow &row_;
	const PolicySchedule &schedule_;
	std::map<std::string, std::unique_ptr<store::Store>> targets_; // by TargetStore, opened once a run
	std::map<std::string, Error> unreachable_;                     // tried once a run, not once a copy
	Json copies_ = Json::array();
	Json deleted_ = Json::array();
};

} // namespace virtsnap::daemon
