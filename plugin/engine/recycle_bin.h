// EBS's Recycle Bin for snapshots: retention rules, snapshots deleted into
// the bin, listed and restored from it. Rules and bin entries are sealed
// records in the store, and times are the store's clock, so that every
// host sharing the store applies the same rules and agrees on when an
// entry's retention ends. A bin entry holds the deleted snapshot's
// manifest (store/held_manifests.h): gc keeps its chunks until the
// retention ends, then removes the entry, and the chunks go with the
// next gc's sweep.
//
// A rule is its account's (EBS: an account manages only its own rules):
// only that account lists, changes, locks or deletes it, and it retains
// only that account's snapshots. The functions below take the caller's
// account; "" (and a rule or manifest from before accounts, which names
// none) is the store's default account.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace virtsnap::engine {

struct RuleLock {
	int64_t unlockDelayDays = 0; // 7 to 30
	std::string state;           // "locked", "pending_unlock" or "unlocked"
	int64_t lockEndTime = 0;     // pending_unlock: when it is unlocked (unix seconds)
};

struct RetentionRule {
	std::string identifier;
	std::string ownerId; // the account whose rule it is; "": the default account
	std::string description;
	int64_t retentionDays = 0;  // 1 to 365
	store::Tags resourceTags;   // none: every snapshot; else any one of them (an empty value: any value)
	std::optional<RuleLock> lock;

	// "locked", "pending_unlock" or "unlocked", at `now`.
	std::string lockState(int64_t now) const;
};

struct RuleChange {
	std::optional<std::string> description;
	std::optional<int64_t> retentionDays;
	std::optional<store::Tags> resourceTags;
};

// Made for rule.ownerId.
Result<RetentionRule> createRule(store::Store &store, const RetentionRule &rule);
// The rules of `accountId`, as every call below sees them: another
// account's rule does not exist for it (ResourceNotFoundException).
Result<std::vector<RetentionRule>> listRules(store::Store &store, const std::string &accountId, int64_t &now);
Result<RetentionRule> getRule(store::Store &store, const std::string &accountId, const std::string &identifier,
			      int64_t &now);
// A locked rule (or one whose unlock delay has not passed) refuses a
// shorter retention and other resource tags, and deletion.
Result<RetentionRule> updateRule(store::Store &store, const std::string &accountId, const std::string &identifier,
				 const RuleChange &change, int64_t &now);
Result<void> deleteRule(store::Store &store, const std::string &accountId, const std::string &identifier);
// Only rules without resource tags can be locked, as on EBS.
Result<RetentionRule> lockRule(store::Store &store, const std::string &accountId, const std::string &identifier,
			       int64_t unlockDelayDays, int64_t &now);
// Starts the unlock delay; the rule is unlocked once it has passed.
Result<RetentionRule> unlockRule(store::Store &store, const std::string &accountId, const std::string &identifier,
				 int64_t &now);

struct BinEntry {
	store::Manifest manifest;
	int64_t enterTime = 0; // unix seconds, the store's clock
	int64_t exitTime = 0;  // when it is deleted for good
	std::string ruleId;    // the rule whose retention it has
};

// The rule whose retention a snapshot with `tags` gets: of those that
// match, the longest.
const RetentionRule *ruleFor(const std::vector<RetentionRule> &rules, const store::Tags &tags);
// With a rule of the snapshot's account matching its tags, moves it into
// the bin for the longest retention of those rules and returns the entry;
// else nothing.
Result<std::optional<BinEntry>> recycle(store::Store &store, const store::Manifest &m);
// The entries whose retention has not ended, or those of the ids named.
Result<std::vector<BinEntry>> listRecycleBin(store::Store &store, const std::vector<std::string> &snapshotIds);
// The snapshot back, whole, as it was deleted; InvalidSnapshot.NotFound
// when it is not (or no longer) in the bin.
Result<store::Manifest> restoreFromRecycleBin(store::Store &store, const std::string &snapshotId);

} // namespace virtsnap::engine
