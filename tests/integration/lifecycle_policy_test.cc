// Lifecycle policies through the virtsnap command, as a user keeps them:
// create, get, list with filters, update and delete, in process and
// through virtsnapd; bad input gives one line and changes nothing. Those
// need no QEMU; RunLifecyclePolicyTest runs a policy against one.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <sqlite3.h>

#include "cli_fixture.h"
#include "core/ids.h"
#include "tests/support/backends.h"
#include "tests/support/daemon_connection.h"
#include "tests/support/qemu_instance.h"

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

	// Over the socket the daemon is sent JSON: it opens no file for anyone.
	DaemonConnection raw(socket);
	ASSERT_GE(raw.fd(), 0);
	Json request = Json::object();
	request.set("command", Json::string("create-lifecycle-policy"));
	request.set("options", Json::object()
				       .set("description", Json::array().append(Json::string("x")))
				       .set("policy-details", Json::array().append(Json::string("file://" + file))));
	ASSERT_TRUE(raw.send(request.dump() + "\n"));
	std::string reply = raw.readLine();
	EXPECT_NE(reply.find("file:// is read by the virtsnap command"), std::string::npos) << reply;
	EXPECT_EQ(listed({}), both) << "nothing made";
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
	// In process there is no config file here: no store is a target.
	expectOneLineError(createWith(with(R"("CopyTags": true)",
					   R"("CopyTags": true, "CrossStoreCopyRules": [{"TargetStore": "/srv/dr"}])")),
			   "InvalidParameterValue",
			   "PolicyDetails.Schedules[0].CrossStoreCopyRules[0].TargetStore: '/srv/dr' has no [store-target "
			   "/srv/dr] group with its key-file in virtsnap.conf");
	expectOneLineError(createWith(with(R"("CopyTags": true)",
					   R"("CopyTags": true, "CrossStoreCopyRules": [{"TargetStore": "/srv/dr", "CmkArn": "k"}])")),
			   "InvalidParameterValue", "CrossStoreCopyRules[0].CmkArn: is not supported");
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

// A policy with Count 3 on a 2-disk instance one of whose volumes carries
// its target tag, run 5 times: the newest 3 sets remain, with the policy's
// tags; a set taken by hand is untouched; a run whose capture fails is
// recorded, and deletes nothing.
class RunLifecyclePolicyTest : public QemuCliTest
{
protected:
	RunLifecyclePolicyTest() : QemuCliTest("vs-policy-run") {}

	void SetUp() override
	{
		REQUIRE_QEMU();
		ASSERT_EQ(cli({"init"}).status, 0);
		QemuOptions opts;
		for (const char *disk : {"vda", "vdb"}) {
			std::string path = tmp_.file(std::string(disk) + ".qcow2"), error;
			ASSERT_TRUE(createImage(path, "qcow2", "16M", &error)) << error;
			opts.disks.push_back({path, "qcow2", disk});
		}
		opts.name = "vs-policy-run";
		std::string error;
		vm_ = QemuInstance::start(opts, &error);
		ASSERT_TRUE(vm_) << error;
	}

	// The ids of the snapshots carrying tag KEY=VALUE, or of all.
	std::set<std::string> tagged(const std::string &key, const std::string &value)
	{
		std::vector<std::string> args = {"describe-snapshots"};
		if (!key.empty())
			args.insert(args.end(), {"--filter", "Name=tag:" + key + ",Values=" + value});
		CliResult r = cli(args);
		EXPECT_EQ(r.status, 0) << r.err;
		std::set<std::string> ids;
		Json list = r.json().get("Snapshots");
		for (size_t i = 0; i < list.size(); i++)
			ids.insert(list.at(i).getString("SnapshotId").value_or(""));
		return ids;
	}

	std::set<std::string> all() { return tagged("", ""); }
};

// A store beside the test's own, used by the virtsnap command in process.
struct PolicyTargetStore {
	std::string url, keyFile, stateDir;

	CliResult run(const std::string &tmpDir, std::vector<std::string> args) const
	{
		args.insert(args.begin(), {"--store", url, "--key-file", keyFile, "--state-dir", stateDir});
		return runVirtsnap(args, {"TMPDIR=" + tmpDir, "VIRTSNAP_SOCKET=" + tmpDir + "/no-daemon.sock"});
	}

	// Its snapshots (listed afresh from the manifests), by id.
	std::map<std::string, Json> snapshots(const std::string &tmpDir) const
	{
		CliResult r = run(tmpDir, {"describe-snapshots", "--refresh"});
		EXPECT_EQ(r.status, 0) << r.err;
		std::map<std::string, Json> out;
		Json list = r.json().get("Snapshots");
		for (size_t i = 0; i < list.size(); i++)
			out[list.at(i).getString("SnapshotId").value_or("")] = list.at(i);
		return out;
	}
};

std::string policyTagOf(const Json &snapshot, const std::string &key)
{
	Json tags = snapshot.get("Tags");
	for (size_t i = 0; i < tags.size(); i++)
		if (tags.at(i).getString("Key") == key)
			return tags.at(i).getString("Value").value_or("");
	return "";
}

// The ids of a run's copies into the target whose URL is `store`, by state.
std::vector<std::string> runCopiesInto(const Json &run, const std::string &store, const std::string &state)
{
	std::vector<std::string> ids;
	Json copies = run.get("Copies");
	for (size_t i = 0; i < copies.size(); i++)
		if (copies.at(i).getString("TargetStore") == store && copies.at(i).getString("State") == state)
			ids.push_back(copies.at(i).getString("SnapshotId").value_or("failed"));
	return ids;
}

TEST_F(RunLifecyclePolicyTest, CountKeepsTheNewestSetsAndAFailedRunDeletesNothing)
{
	CliResult vols = cli({"describe-volumes", "--qmp-socket", vm_->qmpSocket()});
	ASSERT_EQ(vols.status, 0) << vols.err;
	std::string vda = vols.json().get("Volumes").at(0).getString("VolumeId").value_or("");
	ASSERT_EQ(cli({"create-tags", "--resource", vda, "--tag", "backup=nightly"}).status, 0);
	CliResult manual = cli({"create-snapshots", "--qmp-socket", vm_->qmpSocket(), "--tag", "by=hand", "--wait"});
	ASSERT_EQ(manual.status, 0) << manual.err;
	std::set<std::string> byHand = tagged("by", "hand");
	ASSERT_EQ(byHand.size(), 2u);

	CliResult created = cli({"create-lifecycle-policy", "--description", "nightly", "--policy-details", R"json({
	  "ResourceTypes": ["INSTANCE"], "TargetTags": [{"Key": "backup", "Value": "nightly"}],
	  "Schedules": [{"Name": "nightly", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS"},
	                 "RetainRule": {"Count": 3}, "TagsToAdd": [{"Key": "instance", "Value": "$(instance-id)"}]}]})json"});
	ASSERT_EQ(created.status, 0) << created.err;
	std::string policy = created.json().getString("PolicyId").value_or("");

	std::vector<std::set<std::string>> sets;
	for (int run = 0; run < 5; run++) {
		CliResult r = cli({"run-lifecycle-policy", "--policy-id", policy});
		ASSERT_EQ(r.status, 0) << r.err;
		Json result = r.json().get("Runs").at(0);
		EXPECT_EQ(result.getString("Outcome"), "succeeded") << r.out;
		std::set<std::string> set;
		for (size_t i = 0; i < result.get("SnapshotIds").size(); i++)
			set.insert(result.get("SnapshotIds").at(i).asString());
		ASSERT_EQ(set.size(), 2u) << r.out;
		EXPECT_EQ(result.get("DeletedSnapshotIds").size(), run < 3 ? 0u : 2u) << r.out;
		sets.push_back(set);
	}
	std::set<std::string> newest3;
	for (int run = 2; run < 5; run++)
		newest3.insert(sets[run].begin(), sets[run].end());
	EXPECT_EQ(tagged("aws:dlm:lifecycle-policy-id", policy), newest3);
	EXPECT_EQ(tagged("aws:dlm:lifecycle-schedule-name", "nightly"), newest3);
	EXPECT_EQ(tagged("instance", "i-*"), newest3) << "TagsToAdd, with $(instance-id) filled in";
	EXPECT_EQ(tagged("by", "hand"), byHand) << "a set taken by hand is not the policy's";
	std::set<std::string> before = all();
	EXPECT_EQ(before.size(), 8u);

	// Count 1 would retire two sets now; but the instance is gone, so the
	// capture fails and the run must delete nothing.
	std::string countOne = R"json({
	  "ResourceTypes": ["INSTANCE"], "TargetTags": [{"Key": "backup", "Value": "nightly"}],
	  "Schedules": [{"Name": "nightly", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS"},
	                 "RetainRule": {"Count": 1}}]})json";
	ASSERT_EQ(cli({"update-lifecycle-policy", "--policy-id", policy, "--policy-details", countOne}).status, 0);
	vm_.reset();
	CliResult failed = cli({"run-lifecycle-policy", "--policy-id", policy});
	EXPECT_NE(failed.status, 0) << failed.out;
	EXPECT_EQ(failed.json().get("Runs").at(0).getString("Outcome"), "failed") << failed.out;
	EXPECT_EQ(all(), before) << "a failed run deletes nothing";
	Json runs = cli({"get-lifecycle-policy", "--policy-id", policy}).json().get("Policy").get("ScheduleRuns").at(0);
	EXPECT_EQ(runs.get("RecentRuns").size(), 6u);
	EXPECT_EQ(runs.get("RecentRuns").at(0).getString("Outcome"), "failed") << runs.dump();
	EXPECT_EQ(runs.getString("LastRun"), runs.get("RecentRuns").at(0).getString("StartTime"));
}

// virtsnapd down across three daily slots: started, it runs the schedule
// once, not three times, and the next run is tomorrow's slot.
TEST_F(RunLifecyclePolicyTest, ADaemonRestartedAcrossDueTimesRunsTheScheduleOnce)
{
	CliResult vols = cli({"describe-volumes", "--qmp-socket", vm_->qmpSocket()});
	ASSERT_EQ(vols.status, 0) << vols.err;
	std::string vda = vols.json().get("Volumes").at(0).getString("VolumeId").value_or("");
	ASSERT_EQ(cli({"create-tags", "--resource", vda, "--tag", "backup=nightly"}).status, 0);
	CliResult created = cli({"create-lifecycle-policy", "--description", "nightly", "--policy-details", R"json({
	  "ResourceTypes": ["VOLUME"], "TargetTags": [{"Key": "backup", "Value": "nightly"}],
	  "Schedules": [{"Name": "nightly", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS", "Times": ["00:00"]},
	                 "RetainRule": {"Count": 7}}]})json"});
	ASSERT_EQ(created.status, 0) << created.err;
	std::string policy = created.json().getString("PolicyId").value_or("");

	// As if the policy had been made three days ago and the daemon had
	// been down since: the catalog is the daemon's memory of it.
	std::string catalog = storeDir_ + "/catalog.sqlite";
	ASSERT_TRUE(std::filesystem::exists(catalog)) << catalog;
	auto threeDaysAgo = std::chrono::system_clock::now() - std::chrono::hours(72);
	sqlite3 *db = nullptr;
	ASSERT_EQ(sqlite3_open(catalog.c_str(), &db), SQLITE_OK);
	std::string sql = "UPDATE policies SET schedules_from = '" + isoTime(threeDaysAgo) + "'";
	EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
	sqlite3_close(db);
	std::string nextBefore = cli({"get-lifecycle-policy", "--policy-id", policy})
					 .json().get("Policy").get("ScheduleRuns").at(0).getString("NextRun").value_or("");
	ASSERT_LT(nextBefore, isoTimeNow()) << "due";

	std::string socket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(socket, {"--policy-interval", "1"}));
	ASSERT_TRUE(daemon.start());
	// Three passes of the timer: the first ran what was due; the others
	// must have found nothing more to run.
	std::string log;
	for (int i = 0; i < 1200 && log.find("policy timer: pass 3 ") == std::string::npos; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
		log = readFile(tmp_.file("virtsnapd.log"));
	}
	ASSERT_NE(log.find("policy timer: pass 3 "), std::string::npos) << log;
	EXPECT_NE(log.find("policy timer: pass 1 ran 1 schedule(s)"), std::string::npos) << log;
	EXPECT_NE(log.find("policy timer: pass 2 ran 0 schedule(s)"), std::string::npos) << log;

	Json runs = cli({"get-lifecycle-policy", "--policy-id", policy}, socket)
			    .json().get("Policy").get("ScheduleRuns").at(0);
	ASSERT_EQ(runs.get("RecentRuns").size(), 1u) << runs.dump();
	EXPECT_EQ(runs.get("RecentRuns").at(0).getString("Outcome"), "succeeded") << runs.dump();
	EXPECT_EQ(tagged("aws:dlm:lifecycle-policy-id", policy).size(), 1u);
	std::string next = runs.getString("NextRun").value_or("");
	EXPECT_GT(next, isoTimeNow()) << runs.dump();
	EXPECT_EQ(next.substr(10), "T00:00:00.000Z") << runs.dump();
}

// Through virtsnapd a failed run also says so on the events stream.
TEST_F(RunLifecyclePolicyTest, AFailedRunEmitsAnEvent)
{
	CliResult vols = cli({"describe-volumes", "--qmp-socket", vm_->qmpSocket()});
	ASSERT_EQ(vols.status, 0) << vols.err;
	std::string vda = vols.json().get("Volumes").at(0).getString("VolumeId").value_or("");
	ASSERT_EQ(cli({"create-tags", "--resource", vda, "--tag", "backup=nightly"}).status, 0);
	CliResult created = cli({"create-lifecycle-policy", "--description", "nightly", "--policy-details", R"json({
	  "ResourceTypes": ["VOLUME"], "TargetTags": [{"Key": "backup", "Value": "nightly"}],
	  "Schedules": [{"Name": "nightly", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS"},
	                 "RetainRule": {"Count": 1}}]})json"});
	ASSERT_EQ(created.status, 0) << created.err;
	std::string policy = created.json().getString("PolicyId").value_or("");
	vm_.reset();

	std::string socket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(socket));
	ASSERT_TRUE(daemon.start());
	CliResult failed = cli({"run-lifecycle-policy", "--policy-id", policy}, socket);
	EXPECT_NE(failed.status, 0) << failed.out;
	EXPECT_EQ(failed.json().get("Runs").at(0).getString("Outcome"), "failed") << failed.out << failed.err;
	std::string log;
	for (int i = 0; i < 600 && log.find(policy) == std::string::npos; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
		log = readFile(tmp_.file("events/events.jsonl"));
	}
	ASSERT_NE(log.find(policy), std::string::npos) << log;
	std::optional<Json> event;
	for (const std::string &l : lines(log))
		if (l.find(policy) != std::string::npos)
			event = Json::parse(l);
	ASSERT_TRUE(event) << log;
	EXPECT_EQ(event->getString("detail-type"), "DLM Policy State Change");
	EXPECT_EQ(event->get("detail").getString("state"), "ERROR");
	EXPECT_EQ(event->get("detail").getString("schedule_name"), "nightly");
	EXPECT_NE(event->get("detail").getString("cause").value_or("").find("HypervisorError"), std::string::npos) << log;
}

// CrossStoreCopyRules into a second local store and into the real Ceph
// (RADOS), run by virtsnapd, whose config file holds the targets' keys:
// every run's snapshot is copied into both; the copies restore bit for
// bit from their own stores; each target keeps its RetainRule's Count of
// the policy's copies, a locked copy besides, and nothing else is touched
// there; a target out of
// reach fails the run, which then deletes nothing anywhere, and the next
// run copies into it again.
TEST_F(RunLifecyclePolicyTest, CrossStoreCopiesRestoreAndAreRetainedInTheirTargets)
{
	std::unique_ptr<store::Backend> backend;
	std::string radosUrl;
	REQUIRE_BACKEND("rados", backend, radosUrl);
	backend.reset();
	const std::string tmpDir = workRoot();
	PolicyTargetStore dr{tmp_.file("dr-store"), tmp_.file("keys/dr.key"), tmp_.file("dr-store")};
	PolicyTargetStore ceph{radosUrl, tmp_.file("keys/rados.key"), tmp_.file("rados-state")};
	for (const PolicyTargetStore *t : {&dr, &ceph}) {
		CliResult init = t->run(tmpDir, {"init"});
		ASSERT_EQ(init.status, 0) << init.err;
	}
	// A snapshot of the DR store's own, which no retention may touch.
	std::string reference = tmp_.file("vda.raw");
	std::ofstream(reference).close();
	std::filesystem::resize_file(reference, 16 * kMiB);
	CliResult own = dr.run(tmpDir, {"import-image", "--file", reference, "--format", "raw"});
	ASSERT_EQ(own.status, 0) << own.err;
	std::string drOwn = own.json().getString("SnapshotId").value_or("");

	std::string conf = tmp_.file("virtsnap.conf");
	std::ofstream(conf) << "[store-target " << dr.url << "]\nkey-file = " << dr.keyFile << "\n[store-target "
			    << ceph.url << "]\nkey-file = " << ceph.keyFile << "\n";
	std::string socket = tmp_.file("virtsnapd.sock");
	Virtsnapd daemon(daemonOptions(socket, {"--config", conf}));
	ASSERT_TRUE(daemon.start());
	CliResult vols = cli({"describe-volumes", "--qmp-socket", vm_->qmpSocket()}, socket);
	ASSERT_EQ(vols.status, 0) << vols.err;
	std::string vda = vols.json().get("Volumes").at(0).getString("VolumeId").value_or("");
	ASSERT_EQ(cli({"create-tags", "--resource", vda, "--tag", "backup=nightly"}, socket).status, 0);
	CliResult created = cli({"create-lifecycle-policy", "--description", "dr", "--policy-details", R"json({
	  "ResourceTypes": ["VOLUME"], "TargetTags": [{"Key": "backup", "Value": "nightly"}],
	  "Schedules": [{"Name": "nightly", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS"},
	                 "RetainRule": {"Count": 3}, "TagsToAdd": [{"Key": "env", "Value": "prod"}],
	                 "CrossStoreCopyRules": [
	                   {"TargetStore": ")json" + dr.url + R"json(", "Encrypted": false, "CopyTags": true, "RetainRule": {"Count": 2}},
	                   {"TargetStore": ")json" + ceph.url + R"json(", "RetainRule": {"Count": 1}}]}]})json"},
				socket);
	ASSERT_EQ(created.status, 0) << created.err;
	std::string policy = created.json().getString("PolicyId").value_or("");

	auto runOnce = [&](int pattern, bool succeeds) {
		mirrorWrite(*vm_, "vda", reference, tmp_.file("pattern.bin"), uint64_t(pattern) * kMiB, kMiB, -1);
		CliResult r = cli({"run-lifecycle-policy", "--policy-id", policy}, socket);
		EXPECT_EQ(r.status == 0, succeeds) << r.out << r.err;
		Json run = r.json().get("Runs").at(0);
		EXPECT_EQ(run.getString("Outcome"), succeeds ? "succeeded" : "failed") << r.out;
		return run;
	};
	auto restoresFrom = [&](const PolicyTargetStore &t, const std::string &id) {
		std::string target = tmp_.file(id + ".raw");
		CliResult r = t.run(tmpDir, {"create-volume", "--snapshot-id", id, "--target", target, "--format", "raw"});
		if (r.status != 0)
			return ::testing::AssertionFailure() << "restore of " << id << ": " << r.err;
		auto same = sameImage(target, "raw", reference);
		std::filesystem::remove(target);
		return same;
	};
	auto policyCopies = [&](const PolicyTargetStore &t) {
		std::set<std::string> ids;
		for (const auto &[id, snapshot] : t.snapshots(tmpDir))
			if (policyTagOf(snapshot, "aws:dlm:lifecycle-policy-id") == policy)
				ids.insert(id);
		return ids;
	};

	std::vector<std::vector<std::string>> toDr, toCeph;
	for (int i = 0; i < 3; i++) {
		Json run = runOnce(i, true);
		toDr.push_back(runCopiesInto(run, dr.url, "completed"));
		toCeph.push_back(runCopiesInto(run, ceph.url, "completed"));
		ASSERT_EQ(toDr.back().size(), 1u) << run.dump();
		ASSERT_EQ(toCeph.back().size(), 1u) << run.dump();
		if (i == 0) {
			EXPECT_TRUE(restoresFrom(dr, toDr[0][0]));
			// Locked in the DR store: its retention must keep it.
			CliResult locked = dr.run(tmpDir, {"lock-snapshot", "--snapshot-id", toDr[0][0], "--lock-mode",
							   "governance", "--lock-duration", "1"});
			ASSERT_EQ(locked.status, 0) << locked.err;
		}
		if (i == 1) {
			EXPECT_TRUE(restoresFrom(ceph, toCeph[1][0])) << "incremental, into RADOS";
			Json incremental = ceph.snapshots(tmpDir)[toCeph[1][0]];
			EXPECT_EQ(incremental.getInt("BytesTransferred"), int64_t(kMiB)) << "what changed: " << incremental.dump();
			EXPECT_EQ(incremental.getString("ParentSnapshotId"), toCeph[0][0]) << incremental.dump();
		}
	}
	EXPECT_EQ(policyCopies(dr), (std::set<std::string>{toDr[0][0], toDr[1][0], toDr[2][0]}))
		<< "Count 2, and the locked one";
	EXPECT_EQ(policyCopies(ceph), (std::set<std::string>{toCeph[2][0]})) << "Count 1";
	auto drNow = dr.snapshots(tmpDir);
	EXPECT_TRUE(drNow.count(drOwn)) << "not the policy's: untouched";
	Json copy = drNow[toDr[2][0]];
	EXPECT_EQ(policyTagOf(copy, "aws:dlm:lifecycle-schedule-name"), "nightly");
	EXPECT_EQ(policyTagOf(copy, "virtsnap:source-volume-id"), vda);
	EXPECT_EQ(policyTagOf(copy, "env"), "prod") << "CopyTags";
	EXPECT_EQ(copy.getBool("Encrypted"), false) << "Encrypted false, of an unencrypted snapshot";
	EXPECT_EQ(policyTagOf(ceph.snapshots(tmpDir)[toCeph[2][0]], "env"), "") << "no CopyTags";
	EXPECT_FALSE(copy.getString("SourceStore").value_or("").empty()) << copy.dump();

	// The DR store out of reach: the run fails, and deletes nothing, in
	// this store or in RADOS, where its copy still went.
	std::set<std::string> sourceBefore = tagged("aws:dlm:lifecycle-policy-id", policy);
	ASSERT_EQ(sourceBefore.size(), 3u);
	std::filesystem::rename(dr.url, dr.url + ".away");
	Json failed = runOnce(3, false);
	std::filesystem::rename(dr.url + ".away", dr.url);
	EXPECT_NE(failed.getString("Message").value_or("").find(dr.url), std::string::npos) << failed.dump();
	EXPECT_EQ(runCopiesInto(failed, dr.url, "failed").size(), 1u) << failed.dump();
	std::vector<std::string> toCephWhileDown = runCopiesInto(failed, ceph.url, "completed");
	ASSERT_EQ(toCephWhileDown.size(), 1u) << failed.dump();
	EXPECT_EQ(failed.get("DeletedSnapshotIds").size(), 0u);
	EXPECT_EQ(failed.get("DeletedCopies").size(), 0u);
	EXPECT_EQ(tagged("aws:dlm:lifecycle-policy-id", policy).size(), 4u) << "Count 3, but nothing deleted";
	EXPECT_EQ(policyCopies(ceph), (std::set<std::string>{toCeph[2][0], toCephWhileDown[0]}));
	std::string events;
	for (int i = 0; i < 100 && events.find(policy) == std::string::npos; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
		events = readFile(tmp_.file("events/events.jsonl"));
	}
	EXPECT_NE(events.find("DLM Policy State Change"), std::string::npos) << events;

	Json again = runOnce(4, true);
	std::vector<std::string> lastDr = runCopiesInto(again, dr.url, "completed");
	ASSERT_EQ(lastDr.size(), 1u) << again.dump();
	EXPECT_EQ(policyCopies(dr), (std::set<std::string>{toDr[0][0], toDr[2][0], lastDr[0]}));
	EXPECT_EQ(policyCopies(ceph), (std::set<std::string>{runCopiesInto(again, ceph.url, "completed").at(0)}));
	EXPECT_EQ(tagged("aws:dlm:lifecycle-policy-id", policy).size(), 3u);
	EXPECT_TRUE(restoresFrom(dr, lastDr[0])) << "after a run that missed the DR store";
	// Its parent has no copy there, so every chunk was read (5 MiB); only
	// the 2 MiB written since the last copy there were new to the store.
	Json full = dr.snapshots(tmpDir)[lastDr[0]];
	EXPECT_EQ(full.getInt("BytesTransferred"), int64_t(5 * kMiB)) << full.dump();
	EXPECT_GE(full.getInt("BytesAdded").value_or(0), int64_t(2 * kMiB)) << full.dump();
	EXPECT_LT(full.getInt("BytesAdded").value_or(0), int64_t(3 * kMiB)) << full.dump();
	std::printf("copy into the DR store after a missed run: %lld bytes read, %lld added\n",
		    static_cast<long long>(full.getInt("BytesTransferred").value_or(-1)),
		    static_cast<long long>(full.getInt("BytesAdded").value_or(-1)));

	Json runs = cli({"get-lifecycle-policy", "--policy-id", policy}, socket).json().get("Policy").get("ScheduleRuns").at(0);
	EXPECT_EQ(runs.get("RecentRuns").at(0).get("Copies").size(), 2u) << runs.dump();
	EXPECT_EQ(runs.get("RecentRuns").at(0).get("DeletedCopies").size(), 3u) << runs.dump();
	EXPECT_EQ(runs.get("RecentRuns").at(1).get("Copies").at(0).getString("State"), "failed") << runs.dump();
}

} // namespace
} // namespace virtsnap::test
