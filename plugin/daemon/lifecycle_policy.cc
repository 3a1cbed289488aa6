#include "lifecycle_policy.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

#include "core/ids.h"

namespace virtsnap::daemon {

namespace {

using namespace std::chrono;

std::unexpected<Error> bad(const std::string &path, const std::string &why)
{
	return fail(errc::kInvalidParameterValue, path + ": " + why);
}

std::string at(const std::string &path, size_t i)
{
	return path + "[" + std::to_string(i) + "]";
}

// Every key of `obj` must be one we know: a misspelt field silently
// ignored would be a policy that does something else than its author
// thinks. Fields of DLM's that virtsnap does not have are named as such.
Result<void> checkKeys(const Json &obj, const std::string &path, std::initializer_list<std::string_view> known,
		       std::initializer_list<std::string_view> unsupported = {})
{
	if (!obj.isObject())
		return bad(path, "must be a JSON object");
	for (const std::string &key : obj.keys()) {
		if (std::find(known.begin(), known.end(), key) != known.end())
			continue;
		if (std::find(unsupported.begin(), unsupported.end(), key) != unsupported.end())
			return bad(path + "." + key, "is not supported by virtsnap");
		return bad(path + "." + key, "is not a field of " + path);
	}
	return {};
}

Result<std::optional<int64_t>> optionalInt(const Json &obj, const std::string &path, std::string_view key)
{
	if (!obj.has(key))
		return std::optional<int64_t>();
	auto v = obj.getInt(key);
	if (!v)
		return bad(path + "." + std::string(key), "must be an integer");
	return v;
}

Result<std::optional<std::string>> optionalString(const Json &obj, const std::string &path, std::string_view key)
{
	if (!obj.has(key))
		return std::optional<std::string>();
	auto v = obj.getString(key);
	if (!v)
		return bad(path + "." + std::string(key), "must be a string");
	return v;
}

Result<bool> optionalBool(const Json &obj, const std::string &path, std::string_view key)
{
	if (!obj.has(key))
		return false;
	auto v = obj.getBool(key);
	if (!v)
		return bad(path + "." + std::string(key), "must be true or false");
	return *v;
}

Result<Json> requiredArray(const Json &obj, const std::string &path, std::string_view key, size_t min, size_t max)
{
	Json a = obj.get(key);
	std::string field = path + "." + std::string(key);
	if (a.isNull() && min > 0)
		return bad(field, "is required");
	if (a.isNull())
		return Json::array();
	if (!a.isArray())
		return bad(field, "must be a JSON array");
	if (a.size() < min || a.size() > max)
		return bad(field, "must have " + std::to_string(min) + " to " + std::to_string(max) + " items");
	return a;
}

// [{"Key": K, "Value": V}, ...], as DLM and EC2 write tags.
Result<PolicyTags> parseTags(const Json &obj, const std::string &path, std::string_view key, size_t min, size_t max)
{
	VS_ASSIGN(Json list, requiredArray(obj, path, key, min, max));
	PolicyTags tags;
	for (size_t i = 0; i < list.size(); i++) {
		std::string field = at(path + "." + std::string(key), i);
		Json tag = list.at(i);
		VS_TRY(checkKeys(tag, field, {"Key", "Value"}));
		auto k = tag.getString("Key");
		auto v = tag.getString("Value");
		if (!k || !v)
			return bad(field, "needs a string Key and a string Value");
		if (k->empty() || k->size() > 128 || v->size() > 256)
			return bad(field, "Key must be 1 to 128 characters and Value at most 256");
		for (const auto &[seen, _] : tags)
			if (seen == *k)
				return bad(field, "Key '" + *k + "' is given twice");
		tags.emplace_back(*k, *v);
	}
	return tags;
}

constexpr std::array<int, 8> kIntervalHours = {1, 2, 3, 4, 6, 8, 12, 24};

// "hh:mm", 00:00 to 23:59, as DLM's Times.
std::optional<int> minuteOfDay(const std::string &s)
{
	auto digit = [&](size_t i) { return s[i] >= '0' && s[i] <= '9'; };
	if (s.size() != 5 || s[2] != ':' || !digit(0) || !digit(1) || !digit(3) || !digit(4))
		return std::nullopt;
	int h = (s[0] - '0') * 10 + (s[1] - '0');
	int m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > 23 || m > 59)
		return std::nullopt;
	return h * 60 + m;
}

// DLM takes a cron whose runs are between an hour and a year apart. The
// hour the parser checks; here, that its next runs are no more than a
// leap year apart, and that it runs at all.
Result<void> checkCronSpan(const CronExpression &cron, const std::string &field, UtcTime now)
{
	auto previous = cron.nextAfter(now);
	if (!previous)
		return bad(field, "'" + cron.text() + "' never runs again");
	for (int i = 0; i < 3; i++) {
		auto next = cron.nextAfter(*previous);
		if (!next)
			return i == 0 ? bad(field, "'" + cron.text() + "' runs only once more") : Result<void>{};
		if (*next - *previous > days{366})
			return bad(field, "'" + cron.text() + "' runs less often than once a year");
		previous = next;
	}
	return {};
}

Result<void> parseTimes(const Json &rule, const std::string &path, CreateRule &create)
{
	VS_ASSIGN(Json times, requiredArray(rule, path, "Times", 0, 1));
	if (times.size() == 0)
		return {};
	auto minute = times.at(0).isString() ? minuteOfDay(times.at(0).asString()) : std::nullopt;
	if (!minute)
		return bad(path + ".Times[0]", "must be a time of day as hh:mm (UTC)");
	create.startMinute = *minute;
	create.timesGiven = true;
	return {};
}

Result<CreateRule> parseCreateRule(const Json &rule, const std::string &path, std::optional<UtcTime> now)
{
	VS_TRY(checkKeys(rule, path, {"Interval", "IntervalUnit", "Times", "CronExpression"}, {"Location", "Scripts"}));
	CreateRule create;
	VS_ASSIGN(auto cronText, optionalString(rule, path, "CronExpression"));
	if (cronText) {
		if (rule.has("Interval") || rule.has("IntervalUnit") || rule.has("Times"))
			return bad(path, "takes either CronExpression or Interval, IntervalUnit and Times, not both");
		auto cron = CronExpression::parse(*cronText);
		if (!cron)
			return fail(errc::kInvalidParameterValue, path + "." + cron.error().message);
		if (now)
			VS_TRY(checkCronSpan(*cron, path + ".CronExpression", *now));
		create.cron = std::move(*cron);
		return create;
	}
	VS_ASSIGN(auto interval, optionalInt(rule, path, "Interval"));
	VS_ASSIGN(auto unit, optionalString(rule, path, "IntervalUnit"));
	if (!interval)
		return bad(path, "needs CronExpression, or Interval and IntervalUnit");
	if (std::find(kIntervalHours.begin(), kIntervalHours.end(), *interval) == kIntervalHours.end())
		return bad(path + ".Interval", std::to_string(*interval) + " is not one of 1, 2, 3, 4, 6, 8, 12, 24");
	if (unit != "HOURS")
		return bad(path + ".IntervalUnit", "must be HOURS");
	create.intervalHours = int(*interval);
	VS_TRY(parseTimes(rule, path, create));
	return create;
}

int maxRetention(RetainUnit unit)
{
	// DLM's ceiling: 100 years, in whichever unit.
	switch (unit) {
	case RetainUnit::Days: return 36500;
	case RetainUnit::Weeks: return 5200;
	case RetainUnit::Months: return 1200;
	case RetainUnit::Years: return 100;
	}
	return 0;
}

std::optional<RetainUnit> retainUnit(const std::string &s)
{
	constexpr std::array<std::pair<std::string_view, RetainUnit>, 4> units = {
		{{"DAYS", RetainUnit::Days}, {"WEEKS", RetainUnit::Weeks}, {"MONTHS", RetainUnit::Months},
		 {"YEARS", RetainUnit::Years}}};
	for (const auto &[name, unit] : units)
		if (s == name)
			return unit;
	return std::nullopt;
}

Result<RetainRule> parseRetainRule(const Json &rule, const std::string &path)
{
	VS_TRY(checkKeys(rule, path, {"Count", "Interval", "IntervalUnit"}));
	VS_ASSIGN(auto count, optionalInt(rule, path, "Count"));
	VS_ASSIGN(auto interval, optionalInt(rule, path, "Interval"));
	VS_ASSIGN(auto unitName, optionalString(rule, path, "IntervalUnit"));
	RetainRule retain;
	if (count) {
		if (interval || unitName)
			return bad(path, "takes either Count, or Interval and IntervalUnit, not both");
		if (*count < 1 || *count > 1000)
			return bad(path + ".Count", std::to_string(*count) + " is not 1-1000");
		retain.count = int(*count);
		return retain;
	}
	if (!interval || !unitName)
		return bad(path, "needs Count, or Interval and IntervalUnit");
	auto unit = retainUnit(*unitName);
	if (!unit)
		return bad(path + ".IntervalUnit", "'" + *unitName + "' is not DAYS, WEEKS, MONTHS or YEARS");
	if (*interval < 1 || *interval > maxRetention(*unit))
		return bad(path + ".Interval", std::to_string(*interval) + " is not 1-" +
						       std::to_string(maxRetention(*unit)) + " (100 years at most)");
	retain.interval = int(*interval);
	retain.unit = *unit;
	return retain;
}

// Variables DLM fills in a tag's value when a run creates the snapshot.
constexpr std::array<std::string_view, 2> kTagVariables = {"$(instance-id)", "$(timestamp)"};

Result<void> checkTagsToAdd(const PolicyTags &tags, const std::string &path)
{
	for (const auto &[key, value] : tags) {
		if (key.rfind("aws:", 0) == 0)
			return bad(path, "Key '" + key + "': keys starting with aws: are reserved");
		for (size_t i = value.find("$("); i != std::string::npos; i = value.find("$(", i + 1)) {
			bool known = std::any_of(kTagVariables.begin(), kTagVariables.end(),
						 [&](std::string_view v) { return value.compare(i, v.size(), v) == 0; });
			if (!known)
				return bad(path, "Value '" + value + "' has a variable other than $(instance-id) and $(timestamp)");
		}
	}
	return {};
}

// A TargetStore as [store] path takes one: a directory (absolute), or a
// file://, rados:// or s3:// URL. Whether the config file has a key for
// it is checkCopyTargets's.
Result<std::string> parseTargetStore(const Json &rule, const std::string &path)
{
	VS_ASSIGN(auto url, optionalString(rule, path, "TargetStore"));
	if (!url || url->empty())
		return bad(path + ".TargetStore", "is required: the store the copies go to");
	bool scheme = false;
	for (const char *known : {"file://", "rados://", "s3://"})
		scheme = scheme || url->rfind(known, 0) == 0;
	if (!scheme && (url->find("://") != std::string::npos || (*url)[0] != '/'))
		return bad(path + ".TargetStore", "'" + *url + "' is not an absolute path or a file://, rados:// or s3:// URL");
	return *url;
}

Result<CrossStoreCopyRule> parseCopyRule(const Json &json, const std::string &path)
{
	VS_TRY(checkKeys(json, path, {"TargetStore", "Encrypted", "CmkArn", "CopyTags", "RetainRule"},
			 {"TargetRegion", "Target", "DeprecateRule"}));
	CrossStoreCopyRule rule;
	VS_ASSIGN(rule.targetStore, parseTargetStore(json, path));
	// As DLM: Encrypted makes the copy of an unencrypted snapshot
	// encrypted; a copy of an encrypted one always is. A copy into another
	// store is sealed under that store's default key: the keys of this
	// store mean nothing there.
	VS_ASSIGN(rule.encrypted, optionalBool(json, path, "Encrypted"));
	if (json.has("CmkArn"))
		return bad(path + ".CmkArn", "is not supported: a copy into another store is sealed under that "
					     "store's default key");
	VS_ASSIGN(rule.copyTags, optionalBool(json, path, "CopyTags"));
	if (json.has("RetainRule")) {
		VS_ASSIGN(rule.retain, parseRetainRule(json.get("RetainRule"), path + ".RetainRule"));
	}
	return rule;
}

Result<std::vector<CrossStoreCopyRule>> parseCopyRules(const Json &schedule, const std::string &path)
{
	if (schedule.has("CrossRegionCopyRules"))
		return bad(path + ".CrossRegionCopyRules",
			   "virtsnap copies between stores, not regions: use CrossStoreCopyRules with TargetStore");
	VS_ASSIGN(Json list, requiredArray(schedule, path, "CrossStoreCopyRules", 0, kMaxCopyRules));
	std::vector<CrossStoreCopyRule> rules;
	for (size_t i = 0; i < list.size(); i++) {
		std::string field = at(path + ".CrossStoreCopyRules", i);
		VS_ASSIGN(CrossStoreCopyRule rule, parseCopyRule(list.at(i), field));
		// Two rules into one store would each count the other's copies.
		for (const CrossStoreCopyRule &seen : rules)
			if (seen.targetStore == rule.targetStore)
				return bad(field + ".TargetStore", "'" + rule.targetStore + "' is the target of another rule");
		rules.push_back(std::move(rule));
	}
	return rules;
}

Result<PolicySchedule> parseSchedule(const Json &json, const std::string &path, std::optional<UtcTime> now)
{
	VS_TRY(checkKeys(json, path,
			 {"Name", "CreateRule", "RetainRule", "TagsToAdd", "CopyTags", "CrossStoreCopyRules",
			  "CrossRegionCopyRules"},
			 {"VariableTags", "FastRestoreRule", "ShareRules", "DeprecateRule", "ArchiveRule"}));
	PolicySchedule schedule;
	VS_ASSIGN(auto name, optionalString(json, path, "Name"));
	if (!name || name->empty() || name->size() > 120 ||
	    !std::all_of(name->begin(), name->end(), [](char c) { return isalnum(static_cast<unsigned char>(c)) || c == ' ' || c == '_' || c == '-'; }))
		return bad(path + ".Name", "must be 1 to 120 letters, digits, spaces, _ or -");
	schedule.name = *name;
	if (!json.has("CreateRule") || !json.has("RetainRule"))
		return bad(path, "needs a CreateRule and a RetainRule");
	VS_ASSIGN(schedule.create, parseCreateRule(json.get("CreateRule"), path + ".CreateRule", now));
	VS_ASSIGN(schedule.retain, parseRetainRule(json.get("RetainRule"), path + ".RetainRule"));
	VS_ASSIGN(schedule.tagsToAdd, parseTags(json, path, "TagsToAdd", 0, 45));
	VS_TRY(checkTagsToAdd(schedule.tagsToAdd, path + ".TagsToAdd"));
	VS_ASSIGN(schedule.copyTags, optionalBool(json, path, "CopyTags"));
	VS_ASSIGN(schedule.copyRules, parseCopyRules(json, path));
	return schedule;
}

Result<PolicyResourceType> parseResourceTypes(const Json &details, const std::string &path)
{
	VS_ASSIGN(Json types, requiredArray(details, path, "ResourceTypes", 1, 1));
	std::string type = types.at(0).asString();
	if (type == "VOLUME")
		return PolicyResourceType::Volume;
	if (type == "INSTANCE")
		return PolicyResourceType::Instance;
	return bad(path + ".ResourceTypes[0]", "must be VOLUME or INSTANCE");
}

Result<void> parseParameters(const Json &details, const std::string &path, PolicyDetails &out)
{
	if (!details.has("Parameters"))
		return {};
	Json params = details.get("Parameters");
	std::string field = path + ".Parameters";
	VS_TRY(checkKeys(params, field, {"ExcludeBootVolume", "ExcludeDataVolumeTags"}, {"NoReboot"}));
	if (out.resourceType != PolicyResourceType::Instance)
		return bad(field, "apply only to a policy whose ResourceTypes is INSTANCE");
	VS_ASSIGN(out.excludeBootVolume, optionalBool(params, field, "ExcludeBootVolume"));
	VS_ASSIGN(out.excludeDataVolumeTags, parseTags(params, field, "ExcludeDataVolumeTags", 0, 50));
	return {};
}

Result<std::vector<PolicySchedule>> parseSchedules(const Json &details, const std::string &path,
						   std::optional<UtcTime> now)
{
	VS_ASSIGN(Json list, requiredArray(details, path, "Schedules", 1, 4));
	std::vector<PolicySchedule> schedules;
	std::set<std::string> names;
	for (size_t i = 0; i < list.size(); i++) {
		std::string field = at(path + ".Schedules", i);
		VS_ASSIGN(PolicySchedule schedule, parseSchedule(list.at(i), field, now));
		// The name is in every snapshot's tags and selects what retention
		// counts: two schedules of one name would retire each other's.
		if (!names.insert(schedule.name).second)
			return bad(field + ".Name", "'" + schedule.name + "' is the name of another schedule");
		schedules.push_back(std::move(schedule));
	}
	return schedules;
}

} // namespace

Result<void> checkCopyTargets(const PolicyDetails &details, const std::vector<std::string> &configured,
			      const std::string &thisStore)
{
	for (size_t i = 0; i < details.schedules.size(); i++) {
		const PolicySchedule &s = details.schedules[i];
		for (size_t r = 0; r < s.copyRules.size(); r++) {
			const std::string &url = s.copyRules[r].targetStore;
			std::string field = at(at("PolicyDetails.Schedules", i) + ".CrossStoreCopyRules", r) + ".TargetStore";
			if (url == thisStore)
				return bad(field, "'" + url + "' is this store: copies go to another one");
			if (std::find(configured.begin(), configured.end(), url) == configured.end())
				return bad(field, "'" + url + "' has no [store-target " + url +
							  "] group with its key-file in virtsnap.conf");
		}
	}
	return {};
}

Result<bool> parsePolicyState(const std::string &state)
{
	if (state == "ENABLED" || state == "DISABLED")
		return state == "ENABLED";
	return fail(errc::kInvalidParameterValue, "--state: '" + state + "' is not ENABLED or DISABLED");
}

Result<void> checkPolicyDescription(const std::string &description)
{
	if (description.empty() || description.size() > 500)
		return fail(errc::kInvalidParameterValue, "--description must be 1 to 500 characters");
	for (char c : description)
		if (!isalnum(static_cast<unsigned char>(c)) && c != ' ' && c != '_' && c != '-')
			return fail(errc::kInvalidParameterValue,
				    "--description may hold only letters, digits, spaces, _ and -, as DLM's");
	return {};
}

Result<PolicyDetails> parsePolicyDetails(const Json &details, std::optional<UtcTime> now)
{
	const std::string path = "PolicyDetails";
	VS_TRY(checkKeys(details, path,
			 {"PolicyType", "ResourceTypes", "TargetTags", "Parameters", "Schedules"},
			 {"ResourceLocations", "Actions", "EventSource", "PolicyLanguage", "CreateInterval",
			  "RetainInterval", "CopyTags", "ExtendDeletion", "CrossRegionCopyTargets", "Exclusions"}));
	VS_ASSIGN(auto policyType, optionalString(details, path, "PolicyType"));
	if (policyType && *policyType != "EBS_SNAPSHOT_MANAGEMENT")
		return bad(path + ".PolicyType", "'" + *policyType + "' is not supported: only EBS_SNAPSHOT_MANAGEMENT");
	PolicyDetails out;
	VS_ASSIGN(out.resourceType, parseResourceTypes(details, path));
	VS_ASSIGN(out.targetTags, parseTags(details, path, "TargetTags", 1, 50));
	VS_TRY(parseParameters(details, path, out));
	VS_ASSIGN(out.schedules, parseSchedules(details, path, now));
	return out;
}

namespace {

Json tagsJson(const PolicyTags &tags)
{
	Json list = Json::array();
	for (const auto &[k, v] : tags)
		list.append(Json::object().set("Key", Json::string(k)).set("Value", Json::string(v)));
	return list;
}

const char *unitName(RetainUnit unit)
{
	switch (unit) {
	case RetainUnit::Days: return "DAYS";
	case RetainUnit::Weeks: return "WEEKS";
	case RetainUnit::Months: return "MONTHS";
	case RetainUnit::Years: return "YEARS";
	}
	return "";
}

std::string hhmm(int minuteOfDay)
{
	char buf[8];
	snprintf(buf, sizeof(buf), "%02d:%02d", minuteOfDay / 60 % 24, minuteOfDay % 60);
	return buf;
}

Json retainJson(const RetainRule &rule)
{
	Json retain = Json::object();
	if (rule.count > 0)
		retain.set("Count", Json::integer(rule.count));
	else
		retain.set("Interval", Json::integer(rule.interval)).set("IntervalUnit", Json::string(unitName(rule.unit)));
	return retain;
}

Json scheduleJson(const PolicySchedule &s)
{
	Json create = Json::object();
	if (s.create.cron) {
		create.set("CronExpression", Json::string(s.create.cron->text()));
	} else {
		create.set("Interval", Json::integer(s.create.intervalHours)).set("IntervalUnit", Json::string("HOURS"));
		if (s.create.timesGiven)
			create.set("Times", Json::array().append(Json::string(hhmm(s.create.startMinute))));
	}
	Json copies = Json::array();
	for (const CrossStoreCopyRule &rule : s.copyRules) {
		Json c = Json::object();
		c.set("TargetStore", Json::string(rule.targetStore)).set("Encrypted", Json::boolean(rule.encrypted));
		c.set("CopyTags", Json::boolean(rule.copyTags));
		if (rule.retain)
			c.set("RetainRule", retainJson(*rule.retain));
		copies.append(std::move(c));
	}
	Json out = Json::object()
			   .set("Name", Json::string(s.name))
			   .set("CreateRule", std::move(create))
			   .set("RetainRule", retainJson(s.retain))
			   .set("TagsToAdd", tagsJson(s.tagsToAdd))
			   .set("CopyTags", Json::boolean(s.copyTags));
	if (!s.copyRules.empty())
		out.set("CrossStoreCopyRules", std::move(copies));
	return out;
}

} // namespace

Json toJson(const PolicyDetails &details)
{
	bool instance = details.resourceType == PolicyResourceType::Instance;
	Json out = Json::object();
	out.set("PolicyType", Json::string("EBS_SNAPSHOT_MANAGEMENT"))
		.set("ResourceTypes", Json::array().append(Json::string(instance ? "INSTANCE" : "VOLUME")))
		.set("TargetTags", tagsJson(details.targetTags));
	if (instance)
		out.set("Parameters", Json::object()
					      .set("ExcludeBootVolume", Json::boolean(details.excludeBootVolume))
					      .set("ExcludeDataVolumeTags", tagsJson(details.excludeDataVolumeTags)));
	Json schedules = Json::array();
	for (const PolicySchedule &s : details.schedules)
		schedules.append(scheduleJson(s));
	out.set("Schedules", std::move(schedules));
	return out;
}

std::string expandTagValue(const std::string &value, const std::string &instanceId, UtcTime runTime)
{
	std::string out;
	for (size_t i = 0; i < value.size();) {
		if (value.compare(i, 14, "$(instance-id)") == 0) {
			out += instanceId;
			i += 14;
		} else if (value.compare(i, 12, "$(timestamp)") == 0) {
			out += isoTime(runTime);
			i += 12;
		} else {
			out += value[i++];
		}
	}
	return out;
}

} // namespace virtsnap::daemon
