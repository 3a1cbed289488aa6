// PolicyDetails as DLM checks them: a valid policy reads into the model
// and back into the same JSON; each bad field is refused with one line
// that names it.
#include <gtest/gtest.h>

#include "daemon/lifecycle_policy.h"
#include "policy_test_util.h"

namespace virtsnap::daemon::test {
namespace {

const UtcTime kNow = utc(2026, 12, 5, 8, 0);

const char *kValid = R"json({
  "PolicyType": "EBS_SNAPSHOT_MANAGEMENT",
  "ResourceTypes": ["INSTANCE"],
  "TargetTags": [{"Key": "virtsnap:policy", "Value": "nightly"}],
  "Parameters": {"ExcludeBootVolume": true, "ExcludeDataVolumeTags": [{"Key": "scratch", "Value": "yes"}]},
  "Schedules": [
    {"Name": "nightly", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS", "Times": ["03:00"]},
     "RetainRule": {"Count": 7}, "TagsToAdd": [{"Key": "by", "Value": "$(instance-id) at $(timestamp)"}],
     "CopyTags": true},
    {"Name": "monthly", "CreateRule": {"CronExpression": "cron(0 4 L * ? *)"},
     "RetainRule": {"Interval": 1, "IntervalUnit": "YEARS"}}
  ]
})json";

Json parsed(const std::string &text)
{
	auto json = Json::parse(text);
	EXPECT_TRUE(json) << text;
	return json ? *json : Json();
}

TEST(PolicyDetailsTest, ReadsAValidPolicy)
{
	auto details = parsePolicyDetails(parsed(kValid), kNow);
	ASSERT_TRUE(details) << details.error().toString();
	EXPECT_EQ(details->resourceType, PolicyResourceType::Instance);
	EXPECT_EQ(details->targetTags, (PolicyTags{{"virtsnap:policy", "nightly"}}));
	EXPECT_TRUE(details->excludeBootVolume);
	EXPECT_EQ(details->excludeDataVolumeTags, (PolicyTags{{"scratch", "yes"}}));
	ASSERT_EQ(details->schedules.size(), 2u);
	const PolicySchedule &nightly = details->schedules[0];
	EXPECT_EQ(nightly.name, "nightly");
	EXPECT_EQ(nightly.create.intervalHours, 24);
	EXPECT_EQ(nightly.create.startMinute, 180);
	EXPECT_EQ(nightly.retain.count, 7);
	EXPECT_TRUE(nightly.copyTags);
	const PolicySchedule &monthly = details->schedules[1];
	ASSERT_TRUE(monthly.create.cron);
	EXPECT_EQ(monthly.create.cron->text(), "cron(0 4 L * ? *)");
	EXPECT_EQ(monthly.retain.count, 0);
	EXPECT_EQ(monthly.retain.interval, 1);
	EXPECT_EQ(monthly.retain.unit, RetainUnit::Years);
}

TEST(PolicyDetailsTest, WritesBackWhatItRead)
{
	auto details = parsePolicyDetails(parsed(kValid), kNow);
	ASSERT_TRUE(details) << details.error().toString();
	Json out = toJson(*details);
	auto again = parsePolicyDetails(out, kNow);
	ASSERT_TRUE(again) << again.error().toString() << "\n" << out.dump(true);
	EXPECT_EQ(toJson(*again).dump(), out.dump());
	EXPECT_EQ(out.get("Schedules").at(0).get("CreateRule").dump(),
		  R"({"Interval":24,"IntervalUnit":"HOURS","Times":["03:00"]})");
	EXPECT_EQ(out.get("Schedules").at(1).get("RetainRule").dump(), R"({"Interval":1,"IntervalUnit":"YEARS"})");
}

// kValid with one edit: `from` (which must be in it) replaced by `to`.
std::string edited(const std::string &from, const std::string &to)
{
	std::string text = kValid;
	auto at = text.find(from);
	EXPECT_NE(at, std::string::npos) << from;
	return at == std::string::npos ? text : text.replace(at, from.size(), to);
}

void expectRefused(const std::string &text, const std::string &says)
{
	auto json = Json::parse(text);
	ASSERT_TRUE(json) << text;
	auto details = parsePolicyDetails(*json, kNow);
	ASSERT_FALSE(details) << "accepted: " << says;
	EXPECT_EQ(details.error().code, "InvalidParameterValue");
	EXPECT_EQ(details.error().message.find('\n'), std::string::npos);
	EXPECT_NE(details.error().message.find(says), std::string::npos) << details.error().message;
}

TEST(PolicyDetailsTest, RefusesBadResourcesAndTargets)
{
	expectRefused(edited(R"(["INSTANCE"])", R"(["DISK"])"), "PolicyDetails.ResourceTypes[0]: must be VOLUME or INSTANCE");
	expectRefused(edited(R"(["INSTANCE"])", R"(["INSTANCE", "VOLUME"])"), "PolicyDetails.ResourceTypes: must have 1 to 1 items");
	expectRefused(edited(R"("ResourceTypes": ["INSTANCE"],)", ""), "PolicyDetails.ResourceTypes: is required");
	expectRefused(edited(R"([{"Key": "virtsnap:policy", "Value": "nightly"}])", "[]"), "PolicyDetails.TargetTags: must have 1 to 50 items");
	expectRefused(edited(R"({"Key": "virtsnap:policy", "Value": "nightly"})", R"({"Key": "", "Value": "x"})"), "PolicyDetails.TargetTags[0]: Key must be 1 to 128");
	expectRefused(edited(R"(["INSTANCE"])", R"(["VOLUME"])"), "PolicyDetails.Parameters: apply only to a policy whose ResourceTypes is INSTANCE");
	expectRefused(edited(R"("ExcludeBootVolume": true)", R"("ExcludeBootVolume": "yes")"), "PolicyDetails.Parameters.ExcludeBootVolume: must be true or false");
	expectRefused(edited(R"("EBS_SNAPSHOT_MANAGEMENT")", R"("IMAGE_MANAGEMENT")"), "PolicyDetails.PolicyType: 'IMAGE_MANAGEMENT' is not supported");
	expectRefused(edited(R"("PolicyType")", R"("PolicyTipe")"), "PolicyDetails.PolicyTipe: is not a field of PolicyDetails");
}

TEST(PolicyDetailsTest, RefusesBadCreateRules)
{
	expectRefused(edited(R"("Interval": 24)", R"("Interval": 5)"), "PolicyDetails.Schedules[0].CreateRule.Interval: 5 is not one of 1, 2, 3, 4, 6, 8, 12, 24");
	expectRefused(edited(R"("IntervalUnit": "HOURS")", R"("IntervalUnit": "DAYS")"), "PolicyDetails.Schedules[0].CreateRule.IntervalUnit: must be HOURS");
	expectRefused(edited(R"(["03:00"])", R"(["3:00"])"), "PolicyDetails.Schedules[0].CreateRule.Times[0]: must be a time of day as hh:mm");
	expectRefused(edited(R"(["03:00"])", R"(["24:00"])"), "Times[0]: must be a time of day");
	expectRefused(edited(R"(["03:00"])", R"(["03:00", "15:00"])"), "CreateRule.Times: must have 0 to 1 items");
	expectRefused(edited("cron(0 4 L * ? *)", "cron(0 4 L * *)"), "PolicyDetails.Schedules[1].CreateRule.CronExpression: 'cron(0 4 L * *)' has 5 fields, not 6");
	expectRefused(edited("cron(0 4 L * ? *)", "cron(*/5 4 L * ? *)"), "Schedules[1].CreateRule.CronExpression: Minutes '*/5' must name one minute");
	expectRefused(edited("cron(0 4 L * ? *)", "cron(0 4 L * ? 2020)"), "CronExpression: 'cron(0 4 L * ? 2020)' never runs again");
	expectRefused(edited("cron(0 4 L * ? *)", "cron(0 4 29 2 ? *)"), "runs less often than once a year");
	expectRefused(edited(R"j({"CronExpression": "cron(0 4 L * ? *)"})j", R"j({"CronExpression": "cron(0 4 L * ? *)", "Interval": 24})j"), "takes either CronExpression or Interval");
	expectRefused(edited(R"j({"CronExpression": "cron(0 4 L * ? *)"})j", "{}"), "Schedules[1].CreateRule: needs CronExpression, or Interval and IntervalUnit");
}

TEST(PolicyDetailsTest, RefusesBadRetainRules)
{
	expectRefused(edited(R"("Count": 7)", R"("Count": 0)"), "PolicyDetails.Schedules[0].RetainRule.Count: 0 is not 1-1000");
	expectRefused(edited(R"("Count": 7)", R"("Count": 1001)"), "RetainRule.Count: 1001 is not 1-1000");
	expectRefused(edited(R"("Count": 7)", R"("Count": "7")"), "RetainRule.Count: must be an integer");
	expectRefused(edited(R"("Count": 7)", R"("Count": 7, "Interval": 2)"), "takes either Count, or Interval and IntervalUnit");
	expectRefused(edited(R"("Interval": 1, "IntervalUnit": "YEARS")", R"("Interval": 101, "IntervalUnit": "YEARS")"), "Schedules[1].RetainRule.Interval: 101 is not 1-100");
	expectRefused(edited(R"("Interval": 1, "IntervalUnit": "YEARS")", R"("Interval": 0, "IntervalUnit": "DAYS")"), "RetainRule.Interval: 0 is not 1-36500");
	expectRefused(edited(R"("Interval": 1, "IntervalUnit": "YEARS")", R"("Interval": 1, "IntervalUnit": "HOURS")"), "RetainRule.IntervalUnit: 'HOURS' is not DAYS, WEEKS, MONTHS or YEARS");
	expectRefused(edited(R"("Interval": 1, "IntervalUnit": "YEARS")", R"("Interval": 1)"), "Schedules[1].RetainRule: needs Count, or Interval and IntervalUnit");
}

TEST(PolicyDetailsTest, RefusesBadSchedules)
{
	expectRefused(edited(R"("Name": "monthly")", R"("Name": "nightly")"), "Schedules[1].Name: 'nightly' is the name of another schedule");
	expectRefused(edited(R"("Name": "monthly")", R"("Name": "month/ly")"), "Schedules[1].Name: must be 1 to 120");
	expectRefused(edited(R"("Key": "by")", R"("Key": "aws:by")"), "Schedules[0].TagsToAdd: Key 'aws:by': keys starting with aws: are reserved");
	expectRefused(edited("$(timestamp)", "$(date)"), "has a variable other than $(instance-id) and $(timestamp)");
	expectRefused(edited(R"("CopyTags": true)", R"("CopyTags": true, "FastRestoreRule": {})"), "Schedules[0].FastRestoreRule: is not supported by virtsnap");
	expectRefused(edited(R"("RetainRule": {"Count": 7}, )", ""), "Schedules[0]: needs a CreateRule and a RetainRule");
	std::string five = R"({"ResourceTypes": ["VOLUME"], "TargetTags": [{"Key": "a", "Value": "b"}], "Schedules": [)";
	for (int i = 0; i < 5; i++)
		five += std::string(i ? "," : "") + R"({"Name": "s)" + std::to_string(i) +
			R"(", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS"}, "RetainRule": {"Count": 1}})";
	expectRefused(five + "]}", "PolicyDetails.Schedules: must have 1 to 4 items");
}

// kValid's first schedule with these CrossStoreCopyRules.
std::string withCopies(const std::string &rules)
{
	return edited(R"("CopyTags": true)", R"("CopyTags": true, "CrossStoreCopyRules": )" + rules);
}

TEST(PolicyDetailsTest, CrossStoreCopyRules)
{
	auto details = parsePolicyDetails(parsed(withCopies(R"([
	    {"TargetStore": "/srv/dr", "Encrypted": true, "CopyTags": true, "RetainRule": {"Count": 2}},
	    {"TargetStore": "rados://dr?conf=/etc/ceph/ceph.conf", "RetainRule": {"Interval": 3, "IntervalUnit": "WEEKS"}},
	    {"TargetStore": "s3://dr?endpoint=http://10.0.0.9:7480"}])")),
					  kNow);
	ASSERT_TRUE(details) << details.error().toString();
	const auto &rules = details->schedules[0].copyRules;
	ASSERT_EQ(rules.size(), 3u);
	EXPECT_EQ(rules[0].targetStore, "/srv/dr");
	EXPECT_TRUE(rules[0].copyTags);
	ASSERT_TRUE(rules[0].retain);
	EXPECT_EQ(rules[0].retain->count, 2);
	EXPECT_FALSE(rules[1].copyTags);
	EXPECT_EQ(rules[1].retain->interval, 3);
	EXPECT_EQ(rules[1].retain->unit, RetainUnit::Weeks);
	EXPECT_FALSE(rules[2].retain) << "kept until deleted";
	EXPECT_TRUE(details->schedules[1].copyRules.empty());

	Json out = toJson(*details);
	EXPECT_EQ(out.get("Schedules").at(0).get("CrossStoreCopyRules").at(0).dump(),
		  R"({"TargetStore":"/srv/dr","Encrypted":true,"CopyTags":true,"RetainRule":{"Count":2}})");
	EXPECT_FALSE(out.get("Schedules").at(1).has("CrossStoreCopyRules"));
	auto again = parsePolicyDetails(out, kNow);
	ASSERT_TRUE(again) << again.error().toString();
	EXPECT_EQ(toJson(*again).dump(), out.dump());

	// The config file's targets: each TargetStore must be one, and not this store.
	EXPECT_TRUE(checkCopyTargets(*details, {"/srv/dr", "rados://dr?conf=/etc/ceph/ceph.conf",
						"s3://dr?endpoint=http://10.0.0.9:7480"},
				     "/srv/store"));
	auto missing = checkCopyTargets(*details, {"/srv/dr", "rados://dr?conf=/etc/ceph/ceph.conf"}, "/srv/store");
	ASSERT_FALSE(missing);
	EXPECT_EQ(missing.error().message,
		  "PolicyDetails.Schedules[0].CrossStoreCopyRules[2].TargetStore: 's3://dr?endpoint=http://10.0.0.9:7480' "
		  "has no [store-target s3://dr?endpoint=http://10.0.0.9:7480] group with its key-file in virtsnap.conf");
	auto self = checkCopyTargets(*details, {"/srv/dr"}, "/srv/dr");
	ASSERT_FALSE(self);
	EXPECT_NE(self.error().message.find("CrossStoreCopyRules[0].TargetStore: '/srv/dr' is this store"),
		  std::string::npos) << self.error().message;
}

TEST(PolicyDetailsTest, RefusesBadCopyRules)
{
	const std::string ok = R"({"TargetStore": "/srv/dr"})";
	expectRefused(withCopies("[" + ok + "," + R"({"TargetStore": "/a"},{"TargetStore": "/b"},{"TargetStore": "/c"}])"),
		      "Schedules[0].CrossStoreCopyRules: must have 0 to 3 items");
	expectRefused(withCopies(R"([{"RetainRule": {"Count": 1}}])"),
		      "Schedules[0].CrossStoreCopyRules[0].TargetStore: is required");
	expectRefused(withCopies(R"([{"TargetStore": "dr"}])"), "CrossStoreCopyRules[0].TargetStore: 'dr' is not an absolute path");
	expectRefused(withCopies(R"([{"TargetStore": "ftp://x/dr"}])"), "TargetStore: 'ftp://x/dr' is not an absolute path or a");
	expectRefused(withCopies(R"([{"TargetStore": "/srv/dr", "Encrypted": "yes"}])"),
		      "CrossStoreCopyRules[0].Encrypted: must be true or false");
	expectRefused(withCopies(R"([{"TargetStore": "/srv/dr", "CmkArn": "key-1"}])"),
		      "CrossStoreCopyRules[0].CmkArn: is not supported: a copy into another store is sealed under");
	expectRefused(withCopies(R"([{"TargetStore": "/srv/dr", "RetainRule": {"Count": 0}}])"),
		      "CrossStoreCopyRules[0].RetainRule.Count: 0 is not 1-1000");
	expectRefused(withCopies(R"([{"TargetStore": "/srv/dr", "RetainRule": {}}])"),
		      "CrossStoreCopyRules[0].RetainRule: needs Count, or Interval and IntervalUnit");
	expectRefused(withCopies("[" + ok + "," + ok + "]"), "CrossStoreCopyRules[1].TargetStore: '/srv/dr' is the target of another rule");
	expectRefused(withCopies(R"([{"TargetStore": "/srv/dr", "TargetRegion": "eu-west-1"}])"),
		      "CrossStoreCopyRules[0].TargetRegion: is not supported by virtsnap");
	expectRefused(withCopies(R"([{"TargetStore": "/srv/dr", "Copytags": true}])"),
		      "CrossStoreCopyRules[0].Copytags: is not a field of");
	expectRefused(withCopies(R"({"TargetStore": "/srv/dr"})"), "CrossStoreCopyRules: must be a JSON array");
	expectRefused(edited(R"("CopyTags": true)", R"("CopyTags": true, "CrossRegionCopyRules": [])"),
		      "Schedules[0].CrossRegionCopyRules: virtsnap copies between stores, not regions");
}

// Details checked once are read back without the one check that depends
// on the time: a cron whose years have run out is a policy that no longer
// runs, not damage.
TEST(PolicyDetailsTest, ReadingBackSkipsTheRunsAgainCheck)
{
	auto json = parsed(edited("cron(0 4 L * ? *)", "cron(0 4 L * ? 2020)"));
	EXPECT_FALSE(parsePolicyDetails(json, kNow));
	auto details = parsePolicyDetails(json, std::nullopt);
	ASSERT_TRUE(details) << details.error().toString();
	EXPECT_EQ(details->schedules[1].create.cron->text(), "cron(0 4 L * ? 2020)");
}

TEST(PolicyDetailsTest, StateAndDescription)
{
	EXPECT_EQ(parsePolicyState("ENABLED").value_or(false), true);
	EXPECT_EQ(parsePolicyState("DISABLED").value_or(true), false);
	EXPECT_FALSE(parsePolicyState("enabled"));
	EXPECT_TRUE(checkPolicyDescription("nightly tagged domains"));
	EXPECT_FALSE(checkPolicyDescription(""));
	EXPECT_FALSE(checkPolicyDescription(std::string(501, 'a')));
	EXPECT_FALSE(checkPolicyDescription("semi;colon"));
}

TEST(PolicyDetailsTest, TagVariables)
{
	UtcTime run = utc(2026, 12, 5, 3, 0);
	EXPECT_EQ(expandTagValue("$(instance-id) at $(timestamp)", "i-0123456789abcdef0", run),
		  "i-0123456789abcdef0 at 2026-12-05T03:00:00.000Z");
	EXPECT_EQ(expandTagValue("plain $(other)", "i-1", run), "plain $(other)");
}

} // namespace
} // namespace virtsnap::daemon::test
