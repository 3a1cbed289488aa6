#include "recycle_bin.h"

#include <algorithm>

#include "accounts.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "store/held_manifests.h"

namespace virtsnap::engine {

namespace {

using store::kRecycleBinRecords;
constexpr const char *kRuleRecords = "recycle-bin-rules";
constexpr int64_t kDay = 86400;

Json ruleJson(const RetentionRule &r)
{
	Json j = Json::object();
	j.set("Identifier", Json::string(r.identifier));
	j.set("OwnerId", Json::string(r.ownerId));
	j.set("Description", Json::string(r.description));
	j.set("RetentionDays", Json::integer(r.retentionDays));
	Json tags = Json::array();
	for (const auto &[k, v] : r.resourceTags)
		tags.append(Json::array().append(Json::string(k)).append(Json::string(v)));
	j.set("ResourceTags", tags);
	if (r.lock) {
		j.set("UnlockDelayDays", Json::integer(r.lock->unlockDelayDays));
		j.set("LockState", Json::string(r.lock->state));
		j.set("LockEndTime", Json::integer(r.lock->lockEndTime));
	}
	return j;
}

RetentionRule parseRule(const Json &j)
{
	RetentionRule r;
	r.identifier = j.getString("Identifier").value_or("");
	r.ownerId = j.getString("OwnerId").value_or(""); // none: made before accounts
	r.description = j.getString("Description").value_or("");
	r.retentionDays = j.getInt("RetentionDays").value_or(0);
	Json tags = j.get("ResourceTags");
	for (size_t i = 0; i < tags.size(); i++)
		r.resourceTags.emplace_back(tags.at(i).at(0).asString(), tags.at(i).at(1).asString());
	if (j.has("LockState"))
		r.lock = RuleLock{j.getInt("UnlockDelayDays").value_or(0), j.getString("LockState").value_or(""),
				  j.getInt("LockEndTime").value_or(0)};
	return r;
}

Result<void> checkRule(const RetentionRule &r)
{
	if (r.retentionDays < 1 || r.retentionDays > 365)
		return fail(errc::kInvalidParameterValue, "the retention period must be from 1 to 365 days");
	if (r.description.size() > 500)
		return fail(errc::kInvalidParameterValue, "the description is longer than 500 characters");
	if (r.resourceTags.size() > 50)
		return fail(errc::kInvalidParameterValue, "a rule takes at most 50 resource tags");
	return {};
}

Result<RetentionRule> loadRule(store::Store &store, const std::string &identifier)
{
	auto json = store::getJsonRecord(store, kRuleRecords, identifier);
	// Not a name a record can have (InvalidParameterValue) is no rule either.
	if (!json && json.error().code != errc::kInvalidParameterValue)
		return std::unexpected(json.error());
	if (!json || !*json)
		return fail(errc::kResourceNotFound, "retention rule " + identifier + " does not exist");
	return parseRule(**json);
}

Result<void> saveRule(store::Store &store, const RetentionRule &r)
{
	return store.putRecord(kRuleRecords, r.identifier, ruleJson(r).dump());
}

// The account `accountId` names: "" is the store's default one (none in a
// store made before accounts, where every owner is "").
Result<std::string> ruleAccountOrDefault(store::Store &store, const std::string &accountId)
{
	if (!accountId.empty())
		return accountId;
	VS_ASSIGN(auto def, defaultAccountId(store));
	return def.value_or("");
}

// Every rule of `accountId` (resolved by ruleAccountOrDefault); with
// `withOwnerless`, the rules made before accounts too, whoever owns them.
Result<std::vector<RetentionRule>> rulesOfAccount(store::Store &store, const std::string &accountId,
						  bool withOwnerless = false)
{
	VS_ASSIGN(std::string def, ruleAccountOrDefault(store, ""));
	VS_ASSIGN(auto ids, store.listRecordIds(kRuleRecords));
	std::vector<RetentionRule> out;
	for (const std::string &id : ids) {
		auto r = loadRule(store, id);
		if (!r && r.error().code == errc::kResourceNotFound)
			continue; // deleted since the listing
		if (!r)
			return std::unexpected(r.error());
		if ((r->ownerId.empty() ? def : r->ownerId) == accountId || (withOwnerless && r->ownerId.empty()))
			out.push_back(std::move(*r));
	}
	return out;
}

// A rule matches a snapshot with any one of its resource tags; a rule
// without tags matches every snapshot.
bool matches(const RetentionRule &r, const store::Tags &tags)
{
	if (r.resourceTags.empty())
		return true;
	for (const auto &[k, v] : r.resourceTags)
		for (const auto &[tk, tv] : tags)
			if (k == tk && (v.empty() || v == tv))
				return true;
	return false;
}

Result<void> checkUnlocked(const RetentionRule &r, int64_t now, const std::string &what)
{
	std::string state = r.lockState(now);
	if (state == "unlocked")
		return {};
	return fail(errc::kRuleLocked, "retention rule " + r.identifier + " is " + state + ": " + what +
					       (state == "locked" ? " (unlock-rule, then wait out its unlock delay)" : ""));
}

Json entryJson(const BinEntry &e)
{
	Json j = Json::object();
	j.set("RecycleBinEnterTime", Json::integer(e.enterTime));
	j.set("RuleId", Json::string(e.ruleId));
	store::setHeldManifest(j, e.manifest, e.exitTime);
	return j;
}

Result<std::optional<BinEntry>> loadEntry(store::Store &store, const std::string &snapshotId)
{
	VS_ASSIGN(auto json, store::getJsonRecord(store, kRecycleBinRecords, snapshotId));
	if (!json)
		return std::optional<BinEntry>();
	VS_ASSIGN(store::HeldManifest held, store::parseHeldManifest(*json, "the Recycle Bin entry of " + snapshotId));
	return BinEntry{std::move(held.manifest), json->getInt("RecycleBinEnterTime").value_or(0), held.heldUntil,
			json->getString("RuleId").value_or("")};
}

} // namespace

std::string RetentionRule::lockState(int64_t now) const
{
	if (!lock || lock->state == "unlocked")
		return "unlocked";
	if (lock->state == "pending_unlock" && now >= lock->lockEndTime)
		return "unlocked";
	return lock->state;
}

Result<RetentionRule> createRule(store::Store &store, const RetentionRule &rule)
{
	VS_TRY(checkRule(rule));
	RetentionRule r = rule;
	VS_ASSIGN(std::string id, newResourceId(""));
	r.identifier = id.substr(0, 11);
	r.lock.reset();
	VS_TRY(saveRule(store, r));
	return r;
}

Result<std::vector<RetentionRule>> listRules(store::Store &store, const std::string &accountId, int64_t &now)
{
	VS_ASSIGN(now, store::storeTime(store));
	VS_ASSIGN(std::string account, ruleAccountOrDefault(store, accountId));
	return rulesOfAccount(store, account);
}

Result<RetentionRule> getRule(store::Store &store, const std::string &accountId, const std::string &identifier,
			      int64_t &now)
{
	VS_ASSIGN(now, store::storeTime(store));
	VS_ASSIGN(RetentionRule r, loadRule(store, identifier));
	VS_ASSIGN(std::string caller, ruleAccountOrDefault(store, accountId));
	VS_ASSIGN(std::string owner, ruleAccountOrDefault(store, r.ownerId));
	// Another account's rule is no rule of the caller's, as on EBS.
	if (owner != caller)
		return fail(errc::kResourceNotFound, "retention rule " + identifier + " does not exist");
	return r;
}

Result<RetentionRule> updateRule(store::Store &store, const std::string &accountId, const std::string &identifier,
				 const RuleChange &change, int64_t &now)
{
	VS_ASSIGN(RetentionRule r, getRule(store, accountId, identifier, now));
	bool weaker = (change.retentionDays && *change.retentionDays < r.retentionDays) ||
		      (change.resourceTags && *change.resourceTags != r.resourceTags);
	if (weaker)
		VS_TRY(checkUnlocked(r, now, "its retention cannot be shortened nor its resource tags changed"));
	if (change.description)
		r.description = *change.description;
	if (change.retentionDays)
		r.retentionDays = *change.retentionDays;
	if (change.resourceTags)
		r.resourceTags = *change.resourceTags;
	VS_TRY(checkRule(r));
	VS_TRY(saveRule(store, r));
	return r;
}

Result<void> deleteRule(store::Store &store, const std::string &accountId, const std::string &identifier)
{
	int64_t now = 0;
	VS_ASSIGN(RetentionRule r, getRule(store, accountId, identifier, now));
	VS_TRY(checkUnlocked(r, now, "it cannot be deleted"));
	return store.removeRecord(kRuleRecords, identifier);
}

Result<RetentionRule> lockRule(store::Store &store, const std::string &accountId, const std::string &identifier,
			       int64_t unlockDelayDays, int64_t &now)
{
	if (unlockDelayDays < 7 || unlockDelayDays > 30)
		return fail(errc::kInvalidParameterValue, "the unlock delay must be from 7 to 30 days");
	VS_ASSIGN(RetentionRule r, getRule(store, accountId, identifier, now));
	if (!r.resourceTags.empty())
		return fail(errc::kInvalidParameterValue,
			    "retention rule " + identifier + " has resource tags: only a rule for every snapshot can be locked");
	if (r.lockState(now) != "unlocked")
		VS_TRY(checkUnlocked(r, now, "it is locked already"));
	r.lock = RuleLock{unlockDelayDays, "locked", 0};
	VS_TRY(saveRule(store, r));
	return r;
}

Result<RetentionRule> unlockRule(store::Store &store, const std::string &accountId, const std::string &identifier,
				 int64_t &now)
{
	VS_ASSIGN(RetentionRule r, getRule(store, accountId, identifier, now));
	if (r.lockState(now) != "locked")
		return fail(errc::kIncorrectState, "retention rule " + identifier + " is " + r.lockState(now) +
							   ", not locked");
	r.lock->state = "pending_unlock";
	r.lock->lockEndTime = now + r.lock->unlockDelayDays * kDay;
	VS_TRY(saveRule(store, r));
	return r;
}

const RetentionRule *ruleFor(const std::vector<RetentionRule> &rules, const store::Tags &tags)
{
	const RetentionRule *longest = nullptr;
	for (const RetentionRule &r : rules)
		if (matches(r, tags) && (!longest || r.retentionDays > longest->retentionDays))
			longest = &r;
	return longest;
}

Result<std::optional<BinEntry>> recycle(store::Store &store, const store::Manifest &m)
{
	// The rules of the snapshot's own account: another's keep nothing of
	// it. A rule made before accounts kept every snapshot, and still does:
	// the upgrade must not weaken a locked rule before its unlock delay.
	VS_ASSIGN(std::string account, ruleAccountOrDefault(store, m.accountId));
	VS_ASSIGN(auto rules, rulesOfAccount(store, account, true));
	VS_ASSIGN(int64_t now, store::storeTime(store));
	const RetentionRule *longest = ruleFor(rules, m.tags);
	if (!longest)
		return std::optional<BinEntry>();
	BinEntry e{m, now, now + longest->retentionDays * kDay, longest->identifier};
	// The entry first: a crash before the manifest goes leaves the
	// snapshot listed and in the bin, never in neither.
	VS_TRY(store.putRecord(kRecycleBinRecords, m.snapshotId, entryJson(e).dump()));
	VS_TRY(store.deleteManifest(m.snapshotId));
	return std::optional<BinEntry>(std::move(e));
}

Result<std::vector<BinEntry>> listRecycleBin(store::Store &store, const std::vector<std::string> &snapshotIds)
{
	VS_ASSIGN(int64_t now, store::storeTime(store));
	VS_ASSIGN(auto ids, store.listRecordIds(kRecycleBinRecords));
	std::vector<BinEntry> out;
	for (const std::string &id : ids) {
		if (!snapshotIds.empty() && std::find(snapshotIds.begin(), snapshotIds.end(), id) == snapshotIds.end())
			continue;
		VS_ASSIGN(auto e, loadEntry(store, id));
		if (e && e->exitTime > now)
			out.push_back(std::move(*e));
	}
	return out;
}

Result<store::Manifest> restoreFromRecycleBin(store::Store &store, const std::string &snapshotId)
{
	VS_TRY(checkSnapshotId(snapshotId));
	// No gc meanwhile: it could remove the entry, and then the chunks.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "restore of " + snapshotId + " from the Recycle Bin"));
	VS_ASSIGN(int64_t now, store::storeTime(store));
	VS_ASSIGN(auto e, loadEntry(store, snapshotId));
	if (!e || e->exitTime <= now)
		return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " is not in the Recycle Bin");
	auto put = store.putManifest(e->manifest);
	if (!put && put.error().code != errc::kTargetExists) // a restore that died before removing the entry
		return std::unexpected(put.error());
	VS_TRY(store.removeRecord(kRecycleBinRecords, snapshotId));
	return std::move(e->manifest);
}

} // namespace virtsnap::engine
