#include "policy_copies.h"

#include <algorithm>
#include <set>

#include "engine/kms_keys.h"
#include "engine/maintenance.h"
#include "engine/snapshot_locks.h"
#include "lifecycle_schedule.h"
#include "store_targets.h"

namespace virtsnap::daemon {

namespace {

// The copy's tags: the DLM ones, the source volume, then (CopyTags) the
// source's own, each key once.
store::Tags copyTagsFor(const catalog::PolicyRow &row, const PolicySchedule &schedule, const CrossStoreCopyRule &rule,
			const catalog::SnapshotRow &source)
{
	store::Tags tags = {{kPolicyIdTag, row.policyId}, {kScheduleNameTag, schedule.name},
			    {kSourceVolumeTag, source.volumeId}};
	if (rule.copyTags)
		for (const auto &tag : source.tags)
			if (std::none_of(tags.begin(), tags.end(), [&](const auto &t) { return t.first == tag.first; }))
				tags.push_back(tag);
	return tags;
}

std::string tagValue(const store::Tags &tags, const std::string &key)
{
	for (const auto &[k, v] : tags)
		if (k == key)
			return v;
	return "";
}

// The copies whose lock holds in the target store.
Result<std::set<std::string>> lockedIn(store::Store &target)
{
	int64_t now = 0;
	VS_ASSIGN(auto locks, engine::describeLocks(target, {}, now));
	std::set<std::string> locked;
	for (const engine::SnapshotLock &l : locks)
		if (l.state(now) != "expired")
			locked.insert(l.snapshotId);
	return locked;
}

} // namespace

Result<store::Store *> PolicyCopies::target(const CrossStoreCopyRule &rule)
{
	if (auto failed = unreachable_.find(rule.targetStore); failed != unreachable_.end())
		return std::unexpected(failed->second);
	auto it = targets_.find(rule.targetStore);
	if (it == targets_.end()) {
		auto opened = openStoreTarget(ctx_, rule.targetStore, "CrossStoreCopyRules TargetStore");
		if (!opened) {
			unreachable_.emplace(rule.targetStore, opened.error());
			return std::unexpected(opened.error());
		}
		it = targets_.emplace(rule.targetStore, std::move(*opened)).first;
	}
	return it->second.get();
}

Result<void> PolicyCopies::copyOne(const CrossStoreCopyRule &rule, const std::string &snapshotId)
{
	Json entry = Json::object();
	entry.set("SourceSnapshotId", Json::string(snapshotId));
	entry.set("TargetStore", Json::string(withoutCredentials(rule.targetStore)));
	auto made = [&]() -> Result<store::Manifest> {
		VS_ASSIGN(auto source, ctx_.catalog->getSnapshot(snapshotId));
		if (!source)
			return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " does not exist");
		// The policy's account reads the snapshot as a copy-snapshot of
		// its own would: an encrypted one only under a key it may use.
		if (source->encrypted && !source->kmsKeyId.empty())
			VS_TRY(engine::requireKmsKeyUse(*ctx_.store, source->kmsKeyId,
							row_.ownerId.empty() ? ctx_.defaultAccount : row_.ownerId,
							ctx_.defaultAccount));
		VS_ASSIGN(store::Store * to, target(rule));
		engine::CopyRequest request;
		request.sourceSnapshotId = snapshotId;
		request.tags = copyTagsFor(row_, schedule_, rule, *source);
		request.ownerId = row_.ownerId;
		request.encrypted = rule.encrypted;
		return pushCopy(ctx_, *to, std::move(request));
	}();
	if (made) {
		entry.set("SnapshotId", Json::string(made->snapshotId)).set("State", Json::string("completed"));
	} else {
		entry.set("State", Json::string("failed")).set("Message", Json::string(made.error().toString()));
	}
	copies_.append(std::move(entry));
	if (!made)
		return fail(made.error().code, "copy of " + snapshotId + " to " + withoutCredentials(rule.targetStore) +
						       ": " + made.error().message);
	return {};
}

Result<void> PolicyCopies::copy(const std::vector<std::string> &snapshotIds)
{
	std::optional<Error> first;
	for (const CrossStoreCopyRule &rule : schedule_.copyRules)
		for (const std::string &id : snapshotIds)
			if (auto copied = copyOne(rule, id); !copied && !first)
				first = copied.error();
	if (first)
		return std::unexpected(*first);
	return {};
}

Result<void> PolicyCopies::retireIn(const CrossStoreCopyRule &rule, UtcTime now)
{
	VS_ASSIGN(store::Store * to, target(rule));
	VS_ASSIGN(std::vector<store::Manifest> manifests, to->listManifests());
	VS_ASSIGN(auto locked, lockedIn(*to));
	std::vector<RetentionCandidate> candidates;
	for (const store::Manifest &m : manifests) {
		auto start = parseUtcTime(m.startTime);
		std::string volume = tagValue(m.tags, kSourceVolumeTag);
		if (start && tagValue(m.tags, kPolicyIdTag) == row_.policyId)
			candidates.push_back({m.snapshotId, volume.empty() ? m.volumeId : volume, *start, true, m.tags,
					      locked.count(m.snapshotId) > 0});
	}
	for (const std::string &id : snapshotsToRetire(*rule.retain, row_.policyId, schedule_.name, candidates, now)) {
		auto deleted = engine::deleteSnapshot(*to, id);
		if (!deleted)
			return fail(deleted.error().code, "retention in " + withoutCredentials(rule.targetStore) + ": " +
								  deleted.error().message);
		deleted_.append(Json::object()
					.set("TargetStore", Json::string(withoutCredentials(rule.targetStore)))
					.set("SnapshotId", Json::string(id)));
	}
	return {};
}

Result<void> PolicyCopies::retire(UtcTime now)
{
	for (const CrossStoreCopyRule &rule : schedule_.copyRules)
		if (rule.retain)
			VS_TRY(retireIn(rule, now));
	return {};
}

} // namespace virtsnap::daemon
