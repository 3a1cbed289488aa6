// Lifecycle policies as Amazon Data Lifecycle Manager shapes them: the
// PolicyDetails JSON a user gives create-lifecycle-policy, checked field by
// field into the model the scheduler and retention work from, and written
// back in the same shape. No I/O here.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cron.h"
#include "json/json.h"

namespace virtsnap::daemon {

using PolicyTags = std::vector<std::pair<std::string, std::string>>;

// The tags every snapshot a policy creates carries, as DLM's do; retention
// deletes nothing without them.
inline constexpr const char *kPolicyIdTag = "aws:dlm:lifecycle-policy-id";
inline constexpr const char *kScheduleNameTag = "aws:dlm:lifecycle-schedule-name";

enum class PolicyResourceType { Volume, Instance };
enum class RetainUnit { Days, Weeks, Months, Years };

// When a schedule runs: every IntervalHours from Time (UTC), or a cron.
struct CreateRule {
	int intervalHours = 0;  // 0 when cron is set
	int startMinute = 0;    // Times[0] as minutes after 00:00 UTC
	bool timesGiven = false;
	std::optional<CronExpression> cron;
};

// Keep the newest Count snapshots, or each for Interval Units.
struct RetainRule {
	int count = 0; // 0 when age-based
	int interval = 0;
	RetainUnit unit = RetainUnit::Days;
};

// DLM's CrossRegionCopyRule, between stores instead of regions: each
// snapshot a run creates is copied into TargetStore, a store the config
// file names in a [store-target URL] group with its key (never the policy,
// so that no policy can name a key file). The copy is sealed under the
// target store's key: Encrypted is true or absent, and CmkArn is refused
// until snapshots have keys of their own.
struct CrossStoreCopyRule {
	std::string targetStore;
	bool encrypted = false;          // a copy of an unencrypted snapshot is encrypted
	bool copyTags = false;           // the source snapshot's tags too
	std::optional<RetainRule> retain; // none: copies are kept until deleted
};

// How many copy rules a schedule may have, as DLM.
inline constexpr size_t kMaxCopyRules = 3;

struct PolicySchedule {
	std::string name;
	CreateRule create;
	RetainRule retain;
	PolicyTags tagsToAdd; // values may hold $(instance-id) and $(timestamp)
	bool copyTags = false;
	std::vector<CrossStoreCopyRule> copyRules;
};

struct PolicyDetails {
	PolicyResourceType resourceType = PolicyResourceType::Volume;
	PolicyTags targetTags;
	bool excludeBootVolume = false;     // INSTANCE only
	PolicyTags excludeDataVolumeTags;   // INSTANCE only
	std::vector<PolicySchedule> schedules;
};

// Checks PolicyDetails as DLM does. A bad field gives one line naming it
// ("PolicyDetails.Schedules[0].RetainRule.Count: 0 is not 1-1000"),
// InvalidParameterValue; fields DLM has and virtsnap not yet
// (FastRestoreRule, ShareRules, ...) are named as not supported.
// `now` is for the one check that needs it, that a cron runs again; none
// when reading back details checked before, whose cron may have run out.
Result<PolicyDetails> parsePolicyDetails(const Json &details, std::optional<UtcTime> now);
// The same details in DLM's shape, for get-lifecycle-policy and the catalog.
Json toJson(const PolicyDetails &details);

// That every CrossStoreCopyRules' TargetStore is one of `configured` (the
// config file's [store-target URL] groups) and not `thisStore`: one line
// naming the field otherwise. Checked at create and update, against the
// daemon's config; a run checks again when it opens the target.
Result<void> checkCopyTargets(const PolicyDetails &details, const std::vector<std::string> &configured,
			      const std::string &thisStore);

// --state: ENABLED or DISABLED.
Result<bool> parsePolicyState(const std::string &state);
// --description: 1 to 500 of [0-9A-Za-z _-], as DLM allows.
Result<void> checkPolicyDescription(const std::string &description);

// A TagsToAdd value with its variables filled in: $(instance-id) with the
// instance (or, for a volume policy, the volume's instance), $(timestamp)
// with the run's start time in ISO 8601.
std::string expandTagValue(const std::string &value, const std::string &instanceId, UtcTime runTime);

} // namespace virtsnap::daemon
