// examples/snapshot-tagged-domains against a fake virsh and a fake virtsnap
// (tests/package/fakes, sharing one JSON state file): which domains it
// picks, what it asks virtsnap, and above all which snapshots its retention
// deletes, since deleting the wrong one loses data. The real end-to-end run
// on libvirt is the hook's test.
#include <regex>

#include "package_test_util.h"
#include "json/json.h"

namespace virtsnap::test {
namespace {

using virtsnap::Json;

const char *kUri = "test:///fake";

std::string policy(const std::vector<std::pair<std::string, std::string>> &tags, const std::string &keep = "")
{
	std::string xml = "<virtsnap:policy xmlns:virtsnap=\"https://virtsnap.example/policy\"" +
			  (keep.empty() ? "" : " keep=\"" + keep + "\"") + ">";
	for (const auto &[k, v] : tags)
		xml += "<virtsnap:tag key=\"" + k + "\" value=\"" + v + "\"/>";
	return xml + "</virtsnap:policy>";
}

class ExamplesTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		ASSERT_FALSE(envOr("VIRTSNAP_SOURCE_DIR").empty()) << "VIRTSNAP_SOURCE_DIR is not set";
		REQUIRE_TOOL("/usr/bin/python3");
		state_ = Json::object();
		state_.set("domains", Json::array());
		state_.set("snapshots", Json::array());
		state_.set("calls", Json::array());
		state_.set("deleted", Json::array());
		state_.set("counter", Json::integer(0));
		std::ofstream(dir_.file("virtsnap.conf")) << "[libvirt]\nuri = " << kUri << "\n";
	}

	void addDomain(const std::string &name, bool running, const std::string &metadata,
		       const std::vector<std::string> &volumes, bool fails = false)
	{
		Json d = Json::object();
		d.set("uuid", Json::string(uuidOf(name)));
		d.set("name", Json::string(name));
		d.set("running", Json::boolean(running));
		d.set("metadata", Json::string(metadata));
		d.set("fail", Json::boolean(fails));
		Json vols = Json::array();
		for (size_t i = 0; i < volumes.size(); i++) {
			Json v = Json::object();
			v.set("VolumeId", Json::string(volumes[i]));
			v.set("Disk", Json::string(std::string("vd") + char('a' + i)));
			vols.append(v);
		}
		d.set("volumes", vols);
		state_.get("domains").append(d);
	}

	std::string uuidOf(const std::string &name)
	{
		return "00000000-0000-4000-8000-" + std::string(12 - name.size(), '0') + name;
	}

	void addSnapshot(const std::string &id, const std::string &volume, const std::string &instance,
			 const std::string &state, const std::string &startTime,
			 const std::vector<std::pair<std::string, std::string>> &tags)
	{
		Json s = Json::object();
		s.set("SnapshotId", Json::string(id));
		s.set("VolumeId", Json::string(volume));
		s.set("Instance", Json::string(instance));
		s.set("State", Json::string(state));
		s.set("StartTime", Json::string(startTime));
		Json t = Json::array();
		for (const auto &[k, v] : tags) {
			Json tag = Json::object();
			tag.set("Key", Json::string(k));
			tag.set("Value", Json::string(v));
			t.append(tag);
		}
		s.set("Tags", t);
		state_.get("snapshots").append(s);
	}

	// Runs the example with the fakes first on PATH; its exit status, with
	// stdout and stderr in output_.
	int runExample(const std::vector<std::string> &args, const std::string &config = "")
	{
		std::ofstream(dir_.file("state.json")) << state_.dump(true);
		std::vector<std::string> argv = {
			"env",
			"PATH=" + sourcePath("tests/package/fakes") + ":/usr/bin:/bin",
			"FAKE_STATE=" + dir_.file("state.json"),
			"VIRTSNAP_CONFIG=" + (config.empty() ? dir_.file("virtsnap.conf") : config),
			sourcePath("examples/snapshot-tagged-domains"),
		};
		argv.insert(argv.end(), args.begin(), args.end());
		int status = runCommand(argv, &output_);
		auto after = Json::parse(readRequiredFile(dir_.file("state.json")));
		EXPECT_TRUE(after) << "the fakes left no state";
		if (after)
			after_ = *after;
		return status;
	}

	std::set<std::string> deleted() const
	{
		std::set<std::string> out;
		for (size_t i = 0; i < after_.get("deleted").size(); i++)
			out.insert(after_.get("deleted").at(i).asString());
		return out;
	}

	// Calls of one program whose first argument is `command`.
	std::vector<std::vector<std::string>> calls(const std::string &program, const std::string &command) const
	{
		std::vector<std::vector<std::string>> out;
		for (size_t i = 0; i < after_.get("calls").size(); i++) {
			Json c = after_.get("calls").at(i);
			std::vector<std::string> words;
			for (size_t j = 0; j < c.size(); j++)
				words.push_back(c.at(j).asString());
			bool matches = words.size() > 1 && words[0] == program &&
				       (program == "virsh" ? words.size() > 3 && words[3] == command : words[1] == command);
			if (matches)
				out.push_back(words);
		}
		return out;
	}

	// Snapshots on vol-a1 of web-01 tagged backup=nightly, oldest first.
	void fiveNightlyOnA1()
	{
		// Out of order on purpose: the example must sort by StartTime.
		addSnapshot("snap-00000000000000013", "vol-a1", "web-01", "completed", "2026-05-03T00:00:00.000Z",
			    {{"backup", "nightly"}});
		addSnapshot("snap-00000000000000011", "vol-a1", "web-01", "completed", "2026-05-01T00:00:00.000Z",
			    {{"backup", "nightly"}});
		addSnapshot("snap-00000000000000015", "vol-a1", "web-01", "completed", "2026-05-05T00:00:00.000Z",
			    {{"backup", "nightly"}});
		addSnapshot("snap-00000000000000012", "vol-a1", "web-01", "completed", "2026-05-02T00:00:00.000Z",
			    {{"backup", "nightly"}, {"team", "web"}});
		addSnapshot("snap-00000000000000014", "vol-a1", "web-01", "completed", "2026-05-04T00:00:00.000Z",
			    {{"backup", "nightly"}});
	}

	TempDir dir_{"vs-example"};
	Json state_, after_;
	std::string output_;
};

TEST_F(ExamplesTest, SnapshotsRunningDomainsWhosePolicyHasEveryTag)
{
	addDomain("web-01", true, policy({{"backup", "nightly"}, {"env", "prod"}}), {"vol-a1"});
	addDomain("web-02", true, policy({{"backup", "weekly"}}), {"vol-b1"});
	addDomain("db-01", true, "", {"vol-c1"});
	addDomain("old-01", false, policy({{"backup", "nightly"}}), {"vol-d1"});
	addDomain("alien-01", true,
		  "<x:policy xmlns:x=\"https://example.com/other\"><x:tag key=\"backup\" value=\"nightly\"/></x:policy>",
		  {"vol-e1"});
	ASSERT_EQ(runExample({"--tag", "backup=nightly"}), 0) << output_;
	auto creates = calls("virtsnap", "create-snapshots");
	ASSERT_EQ(creates.size(), 1u) << output_;
	EXPECT_EQ(creates[0], (std::vector<std::string>{"virtsnap", "create-snapshots", "--domain", uuidOf("web-01"),
							  "--connect", kUri, "--quiesce", "try", "--tag",
							  "backup=nightly", "--output", "json"}));
	auto waits = calls("virtsnap", "wait");
	ASSERT_EQ(waits.size(), 1u) << output_;
	EXPECT_EQ(waits[0][2], "snapshot-completed");

	// Every tag must be there: env=prod too picks web-01, env=dev none.
	// (Each run starts again from the state set up above.)
	ASSERT_EQ(runExample({"--tag", "backup=nightly", "--tag", "env=prod"}), 0) << output_;
	EXPECT_EQ(calls("virtsnap", "create-snapshots").size(), 1u) << output_;
	ASSERT_EQ(runExample({"--tag", "backup=nightly", "--tag", "env=dev"}), 0) << output_;
	EXPECT_TRUE(calls("virtsnap", "create-snapshots").empty()) << output_;
	EXPECT_NE(output_.find("no running domain"), std::string::npos) << output_;
}

TEST_F(ExamplesTest, KeepsTheNewestPerVolumeAndTouchesNothingElse)
{
	addDomain("web-01", true, policy({{"backup", "nightly"}}), {"vol-a1", "vol-a2"});
	fiveNightlyOnA1();
	// Not candidates: another tag value, not completed, another volume.
	addSnapshot("snap-00000000000000021", "vol-a1", "web-01", "completed", "2026-04-01T00:00:00.000Z",
		    {{"backup", "weekly"}});
	addSnapshot("snap-00000000000000022", "vol-a1", "web-01", "error", "2026-04-02T00:00:00.000Z",
		    {{"backup", "nightly"}});
	addSnapshot("snap-00000000000000023", "vol-a1", "web-01", "completed", "2026-04-03T00:00:00.000Z", {});
	addSnapshot("snap-00000000000000031", "vol-a2", "web-01", "completed", "2026-05-01T00:00:00.000Z",
		    {{"backup", "nightly"}});
	for (int i = 0; i < 4; i++)
		addSnapshot("snap-0000000000000004" + std::to_string(i), "vol-z9", "other", "completed",
			    "2026-03-0" + std::to_string(i + 1) + "T00:00:00.000Z", {{"backup", "nightly"}});

	ASSERT_EQ(runExample({"--tag", "backup=nightly", "--keep", "3"}), 0) << output_;
	// vol-a1: 5 old + 1 new, keep 3: the 3 oldest go. vol-a2: 1 + 1, none.
	EXPECT_EQ(deleted(), (std::set<std::string>{"snap-00000000000000011", "snap-00000000000000012",
						    "snap-00000000000000013"}))
		<< output_;
	// describe-snapshots pages by 2 in the fake: more than one page was read.
	bool paged = false;
	for (const auto &c : calls("virtsnap", "describe-snapshots"))
		paged |= std::find(c.begin(), c.end(), "--next-token") != c.end();
	EXPECT_TRUE(paged) << "the example must follow NextToken";
}

TEST_F(ExamplesTest, ThePolicysKeepOverridesTheOption)
{
	addDomain("web-01", true, policy({{"backup", "nightly"}}, "1"), {"vol-a1"});
	fiveNightlyOnA1();
	ASSERT_EQ(runExample({"--tag", "backup=nightly", "--keep", "30"}), 0) << output_;
	EXPECT_EQ(deleted().size(), 5u) << "keep=\"1\" leaves the new snapshot alone: " << output_;

	addDomain("web-09", true, policy({{"backup", "nightly"}}, "many"), {"vol-a9"});
	EXPECT_EQ(runExample({"--tag", "backup=nightly"}), 1) << output_;
	EXPECT_NE(output_.find("web-09: its policy says keep=\"many\""), std::string::npos) << output_;
}

TEST_F(ExamplesTest, AFailedSnapshotDeletesNothingOfItsVolumesAndFailsTheRun)
{
	addDomain("web-01", true, policy({{"backup", "nightly"}}), {"vol-a1"}, /*fails=*/true);
	fiveNightlyOnA1();
	addDomain("web-02", true, policy({{"backup", "nightly"}}), {"vol-b1"});
	addSnapshot("snap-00000000000000051", "vol-b1", "web-02", "completed", "2026-05-01T00:00:00.000Z",
		    {{"backup", "nightly"}});
	addSnapshot("snap-00000000000000052", "vol-b1", "web-02", "completed", "2026-05-02T00:00:00.000Z",
		    {{"backup", "nightly"}});

	EXPECT_EQ(runExample({"--tag", "backup=nightly", "--keep", "2"}), 1) << output_;
	EXPECT_EQ(deleted(), (std::set<std::string>{"snap-00000000000000051"}))
		<< "web-01's volume keeps everything, web-02 is still pruned: " << output_;
	EXPECT_NE(output_.find("web-01"), std::string::npos);
	EXPECT_NE(output_.find("disk went away"), std::string::npos) << "the cause is shown: " << output_;
}

TEST_F(ExamplesTest, DryRunChangesNothingAndSaysWhatWouldGo)
{
	addDomain("web-01", true, policy({{"backup", "nightly"}}), {"vol-a1"});
	fiveNightlyOnA1();
	ASSERT_EQ(runExample({"--tag", "backup=nightly", "--keep", "3", "--dry-run"}), 0) << output_;
	EXPECT_TRUE(calls("virtsnap", "create-snapshots").empty());
	EXPECT_TRUE(calls("virtsnap", "delete-snapshot").empty());
	EXPECT_TRUE(calls("virtsnap", "wait").empty());
	EXPECT_TRUE(deleted().empty());
	EXPECT_NE(output_.find("would run: virtsnap create-snapshots --domain " + uuidOf("web-01")), std::string::npos)
		<< output_;
	// 5 kept ones, and the new one would make 6: keep 3 drops 3.
	for (const char *gone : {"snap-00000000000000011", "snap-00000000000000012", "snap-00000000000000013"})
		EXPECT_NE(output_.find(std::string("would delete ") + gone), std::string::npos) << gone << "\n" << output_;
	for (const char *kept : {"snap-00000000000000014", "snap-00000000000000015"})
		EXPECT_EQ(output_.find(std::string("would delete ") + kept), std::string::npos) << kept << "\n" << output_;
}

TEST_F(ExamplesTest, WildcardsInATagValueAreLiteral)
{
	addDomain("web-01", true, policy({{"backup", "night*"}}), {"vol-a1"});
	fiveNightlyOnA1(); // backup=nightly: would match night* as a pattern
	addSnapshot("snap-00000000000000061", "vol-a1", "web-01", "completed", "2026-05-06T00:00:00.000Z",
		    {{"backup", "night*"}});
	addSnapshot("snap-00000000000000062", "vol-a1", "web-01", "completed", "2026-05-07T00:00:00.000Z",
		    {{"backup", "night*"}});
	ASSERT_EQ(runExample({"--tag", "backup=night*", "--keep", "2"}), 0) << output_;
	EXPECT_EQ(deleted(), (std::set<std::string>{"snap-00000000000000061"})) << output_;
}

TEST_F(ExamplesTest, TheDefaultUriIsTheConfigs)
{
	addDomain("web-01", true, policy({{"backup", "nightly"}}), {"vol-a1"});
	std::ofstream(dir_.file("other.conf")) << "[libvirt]\n# a comment\nuri = qemu+ssh://host/system\n";
	ASSERT_EQ(runExample({"--tag", "backup=nightly"}, dir_.file("other.conf")), 0) << output_;
	auto lists = calls("virsh", "list");
	ASSERT_EQ(lists.size(), 1u);
	EXPECT_EQ(lists[0][2], "qemu+ssh://host/system");
	auto creates = calls("virtsnap", "create-snapshots");
	ASSERT_EQ(creates.size(), 1u);
	EXPECT_EQ(creates[0][5], "qemu+ssh://host/system");

	ASSERT_EQ(runExample({"--tag", "backup=nightly", "--connect", "qemu:///session"}), 0) << output_;
	EXPECT_EQ(calls("virsh", "list").back()[2], "qemu:///session");
}

TEST_F(ExamplesTest, ABadCommandLineIsRefused)
{
	for (const std::vector<std::string> &bad : std::vector<std::vector<std::string>>{
		     {},
		     {"--tag", "backup"},
		     {"--tag", "=nightly"},
		     {"--tag", "backup="},
		     {"--tag", "backup=a,b"},
		     {"--tag", "backup=nightly", "--keep", "0"},
		     {"--tag", "backup=nightly", "--keep", "x"},
	     }) {
		EXPECT_EQ(runExample(bad), 2) << output_;
		EXPECT_TRUE(calls("virsh", "list").empty()) << "nothing runs on a bad command line";
	}
}

} // namespace
} // namespace virtsnap::test

namespace virtsnap::test {
namespace {

// The example units, checked by systemd with ExecStart pointed at the
// example in the source (verify wants it to exist). The timer is checked
// beside its service, as systemd loads them.
TEST(ExampleUnitsTest, PassSystemdVerify)
{
	ASSERT_FALSE(envOr("VIRTSNAP_SOURCE_DIR").empty()) << "VIRTSNAP_SOURCE_DIR is not set";
	REQUIRE_TOOL("systemd-analyze");
	TempDir dir("vs-example-units");
	std::string service = readRequiredFile(sourcePath("examples/systemd/virtsnap-tagged-snapshots.service"));
	std::smatch exec;
	ASSERT_TRUE(std::regex_search(service, exec,
				      std::regex(R"(\nExecStart=/usr/local/sbin/snapshot-tagged-domains (.*)\n)")));
	EXPECT_EQ(exec[1].str(), "--tag backup=nightly --keep 7");
	service = std::regex_replace(service, std::regex(R"(ExecStart=\S+)"),
				     "ExecStart=" + sourcePath("examples/snapshot-tagged-domains"));
	std::ofstream(dir.file("virtsnap-tagged-snapshots.service")) << service;
	// verify also loads the unit the service requires: the daemon's, as
	// built, on the built daemon.
	std::ofstream(dir.file("virtsnapd.service"))
		<< std::regex_replace(readRequiredFile(envOr("VIRTSNAPD_UNIT")), std::regex(R"(\nExecStart=\S+)"),
				      "\nExecStart=" + envOr("VIRTSNAPD_BIN"));
	std::ofstream(dir.file("virtsnap-tagged-snapshots.timer"))
		<< readRequiredFile(sourcePath("examples/systemd/virtsnap-tagged-snapshots.timer"));
	std::string out;
	int status = runCommand({"sh", "-c", "cd \"$1\" && SYSTEMD_UNIT_PATH=\"$1:\" systemd-analyze verify --man=no "
					 "virtsnap-tagged-snapshots.service virtsnap-tagged-snapshots.timer",
				 "sh", dir.path()},
				&out);
	EXPECT_EQ(status, 0) << out;
	EXPECT_EQ(out, "") << "systemd-analyze verify warns:\n" << out;
}

} // namespace
} // namespace virtsnap::test
