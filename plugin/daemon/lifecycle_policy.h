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

struct PolicySchedule {
	std::string name;
	CreateRule create;
	RetainRule retain;
	PolicyTags tagsToAdd; // values may hold $(instance-id) and $(timestamp)
	bool copyTags = false;
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
// (CrossStoreCopyRules, FastRestoreRule, ...) are named as not supported.
// `now` is for the one check that needs it, that a cron runs again; none
// when reading back details checked before, whose cron may have run out.
Result<PolicyDetails> parsePolicyDetails(const Json &details, std::optional<UtcTime> now);
// The same details in DLM's shape, for get-lifecycle-policy and the catalog.
Json toJson(const PolicyDetails &details);

// --state: ENABLED or DISABLED.
Result<bool> parsePolicyState(const std::string &state);
// --description: 1 to 500 of [0-9A-Za-z _-], as DLM allows.
Result<void> checkPolicyDescription(const std::string &description);

// A TagsToAdd value with its variables filled in: $(instance-id) with the
// instance (or, for a volume policy, the volume's instance), $(timestamp)
// with the run's start time in ISO 8601.
std::string expandTagValue(const std::string &value, const std::string &instanceId, UtcTime runTime);

} // namespace virtsnap::daemon
