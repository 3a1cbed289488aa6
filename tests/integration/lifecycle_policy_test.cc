// Lifecycle policies through the virtsnap command, as a user keeps them:
// create, get, list with filters, update and delete, in process and
// through virtsnapd; bad input gives one line and changes nothing. No
// QEMU: these commands only keep policies (running them is another test's).
#include <algorithm>
#include <fstream>

#include "cli_fixture.h"

namespace virtsnap::test {
namespace {

const char *kDetails = R"json({
  "ResourceTypes": ["INSTANCE"],
  "TargetTags": [{"Key": "virtsnap:policy", "Value": "nightly"}],
  "Schedules": [{"Name": "nightly",
                 "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS", "Times": ["03:00"]},
                 "RetainRule": {"Count": 7}, "CopyTags": true}]
})json";

class LifecyclePolicyTest : public CliTest
{
protected:
	LifecyclePolicyTest() : CliTest("vs-policy") {}

	void SetUp() override { ASSERT_EQ(cli({"init"}).status, 0); }

	std::string create(const std::string &details = kDetails, const std::string &state = "ENABLED",
			   const std::string &socket = "")
	{
		CliResult r = cli({"create-lifecycle-policy", "--description", "nightly domains", "--state", state,
				   "--policy-details", details},
				  socket);
		EXPECT_EQ(r.status, 0) << r.err;
		return r.json().getString("PolicyId").value_or("");
	}

	Json policy(const std::string &id)
	{
		CliResult r = cli({"get-lifecycle-policy", "--policy-id", id});
		EXPECT_EQ(r.status, 0) << r.err;
		return r.json().get("Policy");
	}

	// The ids listed, sorted: policies made in the same second list in
	// no particular order.
	std::vector<std::string> listed(std::vector<std::string> filters)
	{
		filters.insert(filters.begin(), "get-lifecycle-policies");
		CliResult r = cli(filters);
		EXPECT_EQ(r.status, 0) << r.err;
		std::vector<std::string> ids;
		Json list = r.json().get("Policies");
		for (size_t i = 0; i < list.size(); i++)
			ids.push_back(list.at(i).getString("PolicyId").value_or("?"));
		std::sort(ids.begin(), ids.end());
		return ids;
	}

	void expectOneLineError(const CliResult &r, const std::string &code, const std::string &mentions)
	{
		EXPECT_NE(r.status, 0);
		EXPECT_NE(r.err.find(code), std::string::npos) << r.err;
		EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	}
};

TEST_F(LifecyclePolicyTest, CreateGetListUpdateDelete)
{
	std::string id = create();
	EXPECT_EQ(id.rfind("policy-", 0), 0u) << id;
	EXPECT_EQ(id.size(), 7u + 17u) << id;

	Json p = policy(id);
	EXPECT_EQ(p.getString("State"), "ENABLED");
	EXPECT_EQ(p.getString("Description"), "nightly domains");
	Json schedule = p.get("PolicyDetails").get("Schedules").at(0);
	EXPECT_EQ(schedule.get("CreateRule").get("Times").at(0).asString(), "03:00");
	EXPECT_EQ(schedule.get("RetainRule").getInt("Count"), 7);
	Json runs = p.get("ScheduleRuns").at(0);
	EXPECT_EQ(runs.getString("Name"), "nightly");
	EXPECT_FALSE(runs.has("LastRun")) << "never run";
	std::string next = runs.getString("NextRun").value_or("");
	EXPECT_EQ(next.substr(10), "T03:00:00.000Z") << p.dump();

	std::string other = create(R"j({"ResourceTypes": ["VOLUME"], "TargetTags": [{"Key": "team", "Value": "db"}],
	  "Schedules": [{"Name": "hourly", "CreateRule": {"CronExpression": "cron(15 * * * ? *)"},
	                 "RetainRule": {"Interval": 2, "IntervalUnit": "DAYS"}}]})j",
				   "DISABLED");
	std::vector<std::string> both = {id, other};
	std::sort(both.begin(), both.end());
	EXPECT_EQ(listed({}), both);
	EXPECT_EQ(listed({"--state", "DISABLED"}), (std::vector<std::string>{other}));
	EXPECT_EQ(listed({"--target-tags", "virtsnap:policy=nightly"}), (std::vector<std::string>{id}));
	EXPECT_EQ(listed({"--target-tags", "team=db", "--target-tags", "virtsnap:policy=nightly"}), both);
	EXPECT_EQ(listed({"--target-tags", "team=web"}), (std::vector<std::string>{}));
	EXPECT_EQ(listed({"--policy-ids", other}), (std::vector<std::string>{other}));
	EXPECT_FALSE(policy(other).get("ScheduleRuns").at(0).has("NextRun")) << "disabled";

	CliResult updated = cli({"update-lifecycle-policy", "--policy-id", id, "--state", "DISABLED", "--description",
				 "paused"});
	ASSERT_EQ(updated.status, 0) << updated.err;
	p = policy(id);
	EXPECT_EQ(p.getString("State"), "DISABLED");
	EXPECT_EQ(p.getString("Description"), "paused");
	EXPECT_EQ(p.get("PolicyDetails").get("Schedules").at(0).get("RetainRule").getInt("Count"), 7) << "kept";

	CliResult deleted = cli({"delete-lifecycle-policy", "--policy-id", id});
	ASSERT_EQ(deleted.status, 0) << deleted.err;
	expectOneLineError(cli({"get-lifecycle-policy", "--policy-id", id}), "ResourceNotFoundException", id);
	EXPECT_EQ(listed({}), (std::vector<std::string>{other}));
}

// file://PATH is read by the virtsnap command, as its caller; through
// virtsnapd the daemon is sent the JSON.
TEST_F(LifecyclePolicyTest, DetailsFromAFileInProcessAndThroughTheDaemon)
{
	std::string file = tmp_.file("policy.json");
	std::ofstream(file) << kDetails;
	std::string inProcess = create("file://" + file);
	EXPECT_EQ(policy(inProcess).get("PolicyDetails").get("TargetTags").at(0).getString("Value"), "nightly");

	std::string socket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(socket));
	ASSERT_TRUE(daemon.start());
	std::string throughDaemon = create("file://" + file, "ENABLED", socket);
	std::vector<std::string> both = {inProcess, throughDaemon};
	std::sort(both.begin(), both.end());
	EXPECT_EQ(listed({}), both);
	expectOneLineError(cli({"create-lifecycle-policy", "--description", "x", "--policy-details",
				"file://" + tmp_.file("absent.json")},
			       socket),
			   "", "absent.json");
}

TEST_F(LifecyclePolicyTest, BadInputGivesOneLineAndChangesNothing)
{
	std::string id = create();
	std::string before = policy(id).dump();
	std::string details = kDetails;
	auto with = [&](const std::string &from, const std::string &to) {
		std::string d = details;
		return d.replace(d.find(from), from.size(), to);
	};
	auto createWith = [&](const std::string &d) {
		return cli({"create-lifecycle-policy", "--description", "x", "--policy-details", d});
	};
	expectOneLineError(createWith(with(R"("Interval": 24, "IntervalUnit": "HOURS", "Times": ["03:00"])",
					   R"j("CronExpression": "cron(0 3 * * *)")j")),
			   "InvalidParameterValue", "CreateRule.CronExpression: 'cron(0 3 * * *)' has 5 fields, not 6");
	expectOneLineError(createWith(with(R"("Count": 7)", R"("Count": 0)")), "InvalidParameterValue",
			   "PolicyDetails.Schedules[0].RetainRule.Count: 0 is not 1-1000");
	expectOneLineError(createWith("{not json"), "InvalidParameterValue", "--policy-details is not JSON");
	expectOneLineError(createWith(with(R"("CopyTags": true)", R"("CopyTags": true, "CrossStoreCopyRules": [])")),
			   "InvalidParameterValue", "CrossStoreCopyRules: is not yet supported");
	expectOneLineError(cli({"create-lifecycle-policy", "--description", "x", "--state", "ON", "--policy-details",
				details}),
			   "InvalidParameterValue", "--state: 'ON'");

	std::string unknown = "policy-0123456789abcdef0";
	expectOneLineError(cli({"get-lifecycle-policy", "--policy-id", unknown}), "ResourceNotFoundException", unknown);
	expectOneLineError(cli({"update-lifecycle-policy", "--policy-id", unknown, "--state", "DISABLED"}),
			   "ResourceNotFoundException", unknown);
	expectOneLineError(cli({"delete-lifecycle-policy", "--policy-id", unknown}), "ResourceNotFoundException",
			   unknown);
	expectOneLineError(cli({"get-lifecycle-policies", "--policy-ids", unknown}), "ResourceNotFoundException",
			   unknown);
	expectOneLineError(cli({"get-lifecycle-policy", "--policy-id", "pol-1"}), "InvalidParameterValue", "pol-1");
	// An update with one bad part changes none of the good ones.
	expectOneLineError(cli({"update-lifecycle-policy", "--policy-id", id, "--description", "renamed",
				"--policy-details", with(R"("Count": 7)", R"("Count": 1001)")}),
			   "InvalidParameterValue", "Count: 1001 is not 1-1000");

	EXPECT_EQ(listed({}), (std::vector<std::string>{id}));
	EXPECT_EQ(policy(id).dump(), before);
}

} // namespace
} // namespace virtsnap::test
