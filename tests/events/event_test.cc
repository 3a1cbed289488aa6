// The notices as JSON: every field, by its AWS name, read back from the
// compact text the log and handlers get.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "events/event.h"

namespace virtsnap::events {
namespace {

using virtsnap::Json;

std::set<std::string> keySet(const Json &j)
{
	auto keys = j.keys();
	return {keys.begin(), keys.end()};
}

// What the log and handlers get: the compact dump, parsed back.
Json roundTrip(const Json &j)
{
	std::string text = j.dump();
	EXPECT_EQ(text.find('\n'), std::string::npos) << text;
	auto parsed = Json::parse(text);
	EXPECT_TRUE(parsed.has_value()) << text;
	return parsed ? *parsed : Json();
}

void expectEnvelope(const Json &e, const char *detailType, const std::string &region, const std::string &account)
{
	EXPECT_EQ(keySet(e), (std::set<std::string>{"version", "id", "detail-type", "source", "account", "time",
						   "region", "resources", "detail"}));
	EXPECT_EQ(e.getString("version"), "0");
	EXPECT_EQ(e.getString("detail-type"), detailType);
	EXPECT_EQ(e.getString("source"), "virtsnap");
	EXPECT_EQ(e.getString("account"), account);
	EXPECT_EQ(e.getString("region"), region);
	std::string id = e.getString("id").value_or("");
	EXPECT_TRUE(std::regex_match(id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
		<< id;
	std::string time = e.getString("time").value_or("");
	EXPECT_TRUE(std::regex_match(time, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"))) << time;
	EXPECT_TRUE(e.get("resources").isArray());
	EXPECT_TRUE(e.get("detail").isObject());
}

TEST(EventJson, SnapshotNoticeFieldByField)
{
	SnapshotNotice n;
	n.event = "createSnapshot";
	n.result = "succeeded";
	n.snapshotId = "snap-0123456789abcdef0";
	n.source = "vol-0fedcba9876543210";
	n.startTime = "2026-01-02T03:04:05.006Z";
	n.endTime = "2026-01-02T03:04:09.123Z";
	n.requestId = "req-1";
	Json e = roundTrip(toJson(n));
	expectEnvelope(e, "EBS Snapshot Notification", "local", "");

	ASSERT_EQ(e.get("resources").size(), 1u);
	EXPECT_EQ(e.get("resources").at(0).asString(), "arn:virtsnap:ec2:local::snapshot/snap-0123456789abcdef0");

	Json d = e.get("detail");
	EXPECT_EQ(keySet(d), (std::set<std::string>{"event", "result", "cause", "request-id", "snapshot_id", "source",
						   "startTime", "endTime"}));
	EXPECT_EQ(d.getString("event"), "createSnapshot");
	EXPECT_EQ(d.getString("result"), "succeeded");
	EXPECT_EQ(d.getString("cause"), "");
	EXPECT_EQ(d.getString("request-id"), "req-1");
	EXPECT_EQ(d.getString("snapshot_id"), "snap-0123456789abcdef0");
	EXPECT_EQ(d.getString("source"), "vol-0fedcba9876543210");
	EXPECT_EQ(d.getString("startTime"), "2026-01-02T03:04:05.006Z");
	EXPECT_EQ(d.getString("endTime"), "2026-01-02T03:04:09.123Z");
}

TEST(EventJson, FailedCopyCarriesCauseRegionAccountAndQuotesSafely)
{
	SnapshotNotice n;
	n.event = "copySnapshot";
	n.result = "failed";
	n.cause = "source \"snap-1\" is gone\nsecond line";
	n.snapshotId = "snap-00000000000000001";
	n.source = "snap-00000000000000002";
	n.region = "lab";
	n.account = "123456789012";
	Json e = roundTrip(toJson(n));
	expectEnvelope(e, "EBS Snapshot Notification", "lab", "123456789012");
	EXPECT_EQ(e.get("resources").at(0).asString(), "arn:virtsnap:ec2:lab:123456789012:snapshot/snap-00000000000000001");
	Json d = e.get("detail");
	EXPECT_EQ(d.getString("event"), "copySnapshot");
	EXPECT_EQ(d.getString("result"), "failed");
	EXPECT_EQ(d.getString("cause"), "source \"snap-1\" is gone\nsecond line");
	EXPECT_EQ(d.getString("source"), "snap-00000000000000002");
}

TEST(EventJson, NoticeWithoutSnapshotIdNamesNoResource)
{
	SnapshotNotice n;
	n.event = "createSnapshot";
	n.result = "failed";
	n.cause = "volume not found";
	Json e = roundTrip(toJson(n));
	EXPECT_TRUE(e.get("resources").isArray());
	EXPECT_EQ(e.get("resources").size(), 0u);
	EXPECT_EQ(e.get("detail").getString("snapshot_id"), "");
}

TEST(EventJson, MultiVolumeNoticeFieldByField)
{
	MultiVolumeNotice n;
	n.result = "failed";
	n.cause = "vol-b: read error";
	n.requestId = "set-42";
	n.snapshots = {{"snap-0000000000000000a", "vol-a", "error"}, {"snap-0000000000000000b", "vol-b", "error"}};
	n.startTime = "2026-01-02T03:04:05.000Z";
	n.endTime = "2026-01-02T03:05:00.000Z";
	Json e = roundTrip(toJson(n));
	expectEnvelope(e, "EBS Multi-Volume Snapshots Completion Status", "local", "");

	Json res = e.get("resources");
	ASSERT_EQ(res.size(), 2u);
	EXPECT_EQ(res.at(0).asString(), "arn:virtsnap:ec2:local::snapshot/snap-0000000000000000a");
	EXPECT_EQ(res.at(1).asString(), "arn:virtsnap:ec2:local::snapshot/snap-0000000000000000b");

	Json d = e.get("detail");
	EXPECT_EQ(keySet(d), (std::set<std::string>{"event", "result", "cause", "request-id", "snapshots", "startTime",
						   "endTime"}));
	EXPECT_EQ(d.getString("event"), "createSnapshots");
	EXPECT_EQ(d.getString("result"), "failed");
	EXPECT_EQ(d.getString("cause"), "vol-b: read error");
	EXPECT_EQ(d.getString("request-id"), "set-42");
	EXPECT_EQ(d.getString("startTime"), "2026-01-02T03:04:05.000Z");
	EXPECT_EQ(d.getString("endTime"), "2026-01-02T03:05:00.000Z");
	Json snaps = d.get("snapshots");
	ASSERT_TRUE(snaps.isArray());
	ASSERT_EQ(snaps.size(), 2u);
	for (size_t i = 0; i < 2; i++) {
		Json s = snaps.at(i);
		EXPECT_EQ(keySet(s), (std::set<std::string>{"snapshot_id", "source", "status"}));
		EXPECT_EQ(s.getString("snapshot_id"), n.snapshots[i].snapshotId);
		EXPECT_EQ(s.getString("source"), n.snapshots[i].source);
		EXPECT_EQ(s.getString("status"), "error");
	}
}

TEST(EventJson, FailedPolicyRunFieldByField)
{
	PolicyRunNotice n;
	n.policyId = "policy-0123456789abcdef0";
	n.scheduleName = "nightly";
	n.cause = "HypervisorError: cannot reach QEMU";
	n.startTime = "2026-01-02T03:04:05.006Z";
	n.endTime = "2026-01-02T03:04:09.123Z";
	Json e = roundTrip(toJson(n));
	expectEnvelope(e, "DLM Policy State Change", "local", "");
	ASSERT_EQ(e.get("resources").size(), 1u);
	EXPECT_EQ(e.get("resources").at(0).asString(), "arn:virtsnap:dlm:local::policy/policy-0123456789abcdef0");
	Json d = e.get("detail");
	EXPECT_EQ(keySet(d), (std::set<std::string>{"state", "policy_id", "schedule_name", "cause", "startTime", "endTime"}));
	EXPECT_EQ(d.getString("state"), "ERROR");
	EXPECT_EQ(d.getString("policy_id"), n.policyId);
	EXPECT_EQ(d.getString("schedule_name"), "nightly");
	EXPECT_EQ(d.getString("cause"), n.cause);
	EXPECT_EQ(d.getString("startTime"), n.startTime);
	EXPECT_EQ(d.getString("endTime"), n.endTime);
}

TEST(EventJson, EachEventGetsItsOwnId)
{
	SnapshotNotice n;
	n.event = "shareSnapshot";
	n.result = "succeeded";
	std::set<std::string> ids;
	for (int i = 0; i < 100; i++)
		ids.insert(toJson(n).getString("id").value_or(""));
	EXPECT_EQ(ids.size(), 100u);
}

} // namespace
} // namespace virtsnap::events
