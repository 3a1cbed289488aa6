// The config file (plugin/core/config.h): defaults, every key, the errors a
// typo gets, and the precedence of --config, the environment and the file.
// The binary links config_dep, GoogleTest and the test support library
// (which brings no part of core) alone, so it also proves the module needs
// nothing of the rest of core (the libvirt hook relies on it).
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "core/config.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// A scratch directory, and the variables the module reads, restored after
// each test so no test sees another's environment.
class ConfigTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		for (const char *name : kVariables) {
			if (const char *v = std::getenv(name))
				saved_[name] = v;
			::unsetenv(name);
		}
	}
	void TearDown() override
	{
		for (const char *name : kVariables) {
			::unsetenv(name);
			if (saved_.count(name))
				::setenv(name, saved_[name].c_str(), 1);
		}
	}

	fs::path write(const std::string &name, const std::string &text)
	{
		fs::path p = dir_ / name;
		std::ofstream(p) << text;
		return p;
	}

	// The error of loading `text`; fails the test if it loads.
	std::string errorOf(const std::string &text)
	{
		fs::path p = write("bad.conf", text);
		auto c = loadConfig(p);
		if (c) {
			ADD_FAILURE() << "loaded, but should not:\n" << text;
			return "";
		}
		EXPECT_EQ(c.error().message.find('\n'), std::string::npos) << "not one line: " << c.error().message;
		EXPECT_NE(c.error().message.find(p.string()), std::string::npos)
			<< "does not name the file: " << c.error().message;
		return c.error().message;
	}

	static constexpr const char *kVariables[] = {"VIRTSNAP_CONFIG", "VIRTSNAP_STORE", "VIRTSNAP_KEY_FILE",
						     "VIRTSNAP_STATE_DIR", "VIRTSNAP_SOCKET"};
	TempDir tmp_{"vs-config-test"};
	fs::path dir_{tmp_.path()};
	std::map<std::string, std::string> saved_;
};

void expectDefaults(const Config &c)
{
	EXPECT_EQ(c.storePath, "/var/lib/virtsnap");
	EXPECT_EQ(c.keyFile, "/etc/virtsnap/store.key");
	EXPECT_EQ(c.socket, "/run/virtsnap/virtsnapd.sock");
	EXPECT_EQ(c.maxParallelJobs, 2u);
	EXPECT_EQ(c.eventsLog, "/var/log/virtsnap/events.jsonl");
	EXPECT_EQ(c.eventsDir, "/etc/virtsnap/events.d");
	EXPECT_EQ(c.handlerTimeout, milliseconds(10'000));
	EXPECT_EQ(c.storeTimeout, std::chrono::seconds(30));
	EXPECT_EQ(c.libvirtUri, "qemu:///system");
	EXPECT_EQ(c.hypervisorTimeout, std::chrono::seconds(30));
	EXPECT_EQ(c.luksIterTime, std::chrono::milliseconds(2000));
}

TEST_F(ConfigTest, MissingFileMeansDefaults)
{
	auto c = loadConfig(dir_ / "absent.conf");
	ASSERT_TRUE(c) << c.error().toString();
	expectDefaults(*c);
	EXPECT_TRUE(c->loadedFrom.empty());
	// A missing directory on the way is just as absent.
	auto deeper = loadConfig(dir_ / "no" / "such" / "virtsnap.conf");
	ASSERT_TRUE(deeper) << deeper.error().toString();
	expectDefaults(*deeper);
}

TEST_F(ConfigTest, EveryKeyIsRead)
{
	fs::path p = write("all.conf", "# a comment\n"
				       "[store]\n"
				       "path = /srv/snapshots\n"
				       "key-file=/root/keys/store.key\n"
				       "timeout = 5\n"
				       "\n"
				       "[daemon]\n"
				       "socket = /run/vs/d.sock\n"
				       "max-parallel-jobs = 7\n"
				       "events-log = /var/log/vs.jsonl\n"
				       "events-dir = /etc/vs/handlers\n"
				       "handler-timeout = 2.5\n"
				       "[libvirt]\n"
				       "uri = qemu+ssh://root@host/system\n"
				       "[hypervisor]\n"
				       "timeout = 12\n"
				       "[restore]\n"
				       "luks-iter-time = 250\n");
	auto c = loadConfig(p);
	ASSERT_TRUE(c) << c.error().toString();
	EXPECT_EQ(c->storePath, "/srv/snapshots");
	EXPECT_EQ(c->keyFile, "/root/keys/store.key");
	EXPECT_EQ(c->socket, "/run/vs/d.sock");
	EXPECT_EQ(c->maxParallelJobs, 7u);
	EXPECT_EQ(c->eventsLog, "/var/log/vs.jsonl");
	EXPECT_EQ(c->eventsDir, "/etc/vs/handlers");
	EXPECT_EQ(c->handlerTimeout, milliseconds(2500));
	EXPECT_EQ(c->storeTimeout, std::chrono::seconds(5));
	EXPECT_EQ(c->libvirtUri, "qemu+ssh://root@host/system");
	EXPECT_EQ(c->hypervisorTimeout, std::chrono::seconds(12));
	EXPECT_EQ(c->luksIterTime, milliseconds(250));
	EXPECT_EQ(c->loadedFrom, p);
}

TEST_F(ConfigTest, KeysLeftOutKeepTheirDefaults)
{
	auto c = loadConfig(write("some.conf", "[daemon]\nmax-parallel-jobs = 3\n[store]\n"));
	ASSERT_TRUE(c) << c.error().toString();
	EXPECT_EQ(c->maxParallelJobs, 3u);
	EXPECT_EQ(c->storePath, "/var/lib/virtsnap");
	EXPECT_EQ(c->handlerTimeout, milliseconds(10'000));
	auto empty = loadConfig(write("empty.conf", ""));
	ASSERT_TRUE(empty) << empty.error().toString();
	expectDefaults(*empty);
}

TEST_F(ConfigTest, BlanksAroundValuesAndEscapes)
{
	auto c = loadConfig(write("blanks.conf", "[store]\npath   =   /srv/with\\sspace  \n"));
	ASSERT_TRUE(c) << c.error().toString();
	EXPECT_EQ(c->storePath, "/srv/with space");
	// A '#' that is meant, after a space, is written \s#.
	auto hash = loadConfig(write("hash.conf", "[store]\npath = /srv/a\\s#b\n"));
	ASSERT_TRUE(hash) << hash.error().toString();
	EXPECT_EQ(hash->storePath, "/srv/a #b");
}

// The installed file is examples/virtsnap.conf. As shipped (all commented
// out) it must load; with every key uncommented it must still give exactly
// the built-in defaults, or its comments lie about them.
TEST_F(ConfigTest, ShippedExampleDocumentsTheDefaults)
{
	const char *source = std::getenv("VIRTSNAP_SOURCE_DIR");
	ASSERT_NE(source, nullptr) << "VIRTSNAP_SOURCE_DIR is not set (meson sets it)";
	fs::path example = fs::path(source) / "examples" / "virtsnap.conf";
	std::ifstream in(example);
	ASSERT_TRUE(in) << "cannot read " << example;
	std::stringstream text;
	text << in.rdbuf();

	auto asShipped = loadConfig(example);
	ASSERT_TRUE(asShipped) << asShipped.error().toString();
	expectDefaults(*asShipped);

	std::regex commentedKey(R"(^#([a-z-]+) = (.*)$)");
	std::string line, uncommented;
	int keys = 0;
	while (std::getline(text, line)) {
		std::smatch m;
		if (std::regex_match(line, m, commentedKey)) {
			uncommented += m[1].str() + " = " + m[2].str() + "\n";
			keys++;
		} else {
			uncommented += line + "\n";
		}
	}
	EXPECT_EQ(keys, 13) << "the example should show every key once";
	auto all = loadConfig(write("uncommented.conf", uncommented));
	ASSERT_TRUE(all) << all.error().toString();
	expectDefaults(*all);
}

TEST_F(ConfigTest, AccountSectionsMapUsersAndGroups)
{
	auto c = parseConfig("t.conf", "[account 210987654321]\nkey-file = /etc/virtsnap/accounts/b.key\n"
				       "users = alice, bob\ngroups = tenant-b\n\n[account 123456789012]\n"
				       "key-file = /k/a.key\n");
	ASSERT_TRUE(c) << c.error().toString();
	ASSERT_EQ(c->accounts.size(), 2u);
	EXPECT_EQ(c->accounts[0].accountId, "210987654321");
	EXPECT_EQ(c->accounts[0].keyFile, "/etc/virtsnap/accounts/b.key");
	EXPECT_EQ(c->accounts[0].users, (std::vector<std::string>{"alice", "bob"}));
	EXPECT_EQ(c->accounts[0].groups, (std::vector<std::string>{"tenant-b"}));
	EXPECT_TRUE(c->accounts[1].users.empty());
	EXPECT_TRUE(Config{}.accounts.empty()) << "no sections: every user acts as the default account";

	EXPECT_NE(errorOf("[account 12345]\nkey-file = /k\n").find("'12345' is not an account id"), std::string::npos);
	EXPECT_NE(errorOf("[account 123456789012]\nusers = a\n").find("key-file is missing"), std::string::npos);
	EXPECT_NE(errorOf("[account 123456789012]\nkey-file = k\n").find("not an absolute path"), std::string::npos);
	EXPECT_NE(errorOf("[account 123456789012]\nkey-file = /k\nuser = a\n").find("unknown key 'user'"),
		  std::string::npos);
}

TEST_F(ConfigTest, UnknownGroupIsNamed)
{
	std::string e = errorOf("[stroe]\npath = /x\n");
	EXPECT_NE(e.find("unknown group [stroe]"), std::string::npos) << e;
	EXPECT_NE(e.find("[store]"), std::string::npos) << "should list the known groups: " << e;
}

TEST_F(ConfigTest, UnknownKeyIsNamed)
{
	std::string e = errorOf("[daemon]\nmax-paralel-jobs = 3\n");
	EXPECT_NE(e.find("[daemon] unknown key 'max-paralel-jobs'"), std::string::npos) << e;
	EXPECT_NE(e.find("max-parallel-jobs"), std::string::npos) << "should list the known keys: " << e;
	// A key in the wrong group is unknown there.
	std::string wrongGroup = errorOf("[store]\nsocket = /run/x.sock\n");
	EXPECT_NE(wrongGroup.find("[store] unknown key 'socket'"), std::string::npos) << wrongGroup;
	// Localised keys (GKeyFile's key[locale]) mean nothing here.
	std::string localised = errorOf("[store]\npath[de] = /x\n");
	EXPECT_NE(localised.find("unknown key 'path[de]'"), std::string::npos) << localised;
}

TEST_F(ConfigTest, AKeyGivenTwiceIsAnError)
{
	// GKeyFile alone would let the second silently win.
	std::string e = errorOf("[daemon]\nmax-parallel-jobs = 3\n# later on\n\n max-parallel-jobs = 4\n");
	EXPECT_NE(e.find("[daemon] max-parallel-jobs: given twice (lines 2 and 5)"), std::string::npos) << e;
	// The same name in two groups is two keys (and the second is unknown).
	std::string twoGroups = errorOf("[store]\npath = /a\n[daemon]\npath = /b\n");
	EXPECT_NE(twoGroups.find("[daemon] unknown key 'path'"), std::string::npos) << twoGroups;
}

TEST_F(ConfigTest, MalformedFileIsAnError)
{
	std::string noEquals = errorOf("[store]\njust some words\n");
	EXPECT_NE(noEquals.find("not a valid key file"), std::string::npos) << noEquals;
	std::string noGroup = errorOf("path = /x\n");
	EXPECT_NE(noGroup.find("not a valid key file"), std::string::npos) << noGroup;
	std::string badGroup = errorOf("[store\npath = /x\n");
	EXPECT_NE(badGroup.find("not a valid key file"), std::string::npos) << badGroup;
	std::string notUtf8 = errorOf("[store]\npath = /x\xff\xfe\n");
	EXPECT_FALSE(notUtf8.empty());
}

TEST_F(ConfigTest, BadValuesNameTheKeyAndTheProblem)
{
	struct Case {
		std::string text, key, problem;
	};
	const std::vector<Case> cases = {
		{"[daemon]\nmax-parallel-jobs = 0\n", "[daemon] max-parallel-jobs: ", "'0' is not a whole number"},
		{"[daemon]\nmax-parallel-jobs = 65\n", "[daemon] max-parallel-jobs: ", "from 1 to 64"},
		{"[daemon]\nmax-parallel-jobs = two\n", "[daemon] max-parallel-jobs: ", "'two'"},
		{"[daemon]\nmax-parallel-jobs = 2x\n", "[daemon] max-parallel-jobs: ", "'2x'"},
		{"[daemon]\nmax-parallel-jobs = -1\n", "[daemon] max-parallel-jobs: ", "'-1'"},
		{"[daemon]\nhandler-timeout = 0\n", "[daemon] handler-timeout: ", "more than 0"},
		{"[daemon]\nhandler-timeout = -3\n", "[daemon] handler-timeout: ", "'-3'"},
		{"[daemon]\nhandler-timeout = 10s\n", "[daemon] handler-timeout: ", "'10s'"},
		{"[daemon]\nhandler-timeout = inf\n", "[daemon] handler-timeout: ", "'inf'"},
		{"[daemon]\nhandler-timeout = nan\n", "[daemon] handler-timeout: ", "'nan'"},
		{"[daemon]\nhandler-timeout = 86401\n", "[daemon] handler-timeout: ", "at most 86400"},
		{"[store]\ntimeout = 0\n", "[store] timeout: ", "from 1 to 3600"},
		{"[store]\ntimeout = 2.5\n", "[store] timeout: ", "'2.5'"},
		{"[store]\ntimeout = 3601\n", "[store] timeout: ", "from 1 to 3600"},
		{"[hypervisor]\ntimeout = 0\n", "[hypervisor] timeout: ", "from 1 to 3600"},
		{"[restore]\nluks-iter-time = 0\n", "[restore] luks-iter-time: ", "from 1 to 60000"},
		{"[restore]\nluks-iter-time = 2s\n", "[restore] luks-iter-time: ", "'2s'"},
		{"[store]\npath = var/lib/virtsnap\n", "[store] path: ", "not an absolute path"},
		{"[store]\nkey-file = store.key\n", "[store] key-file: ", "not an absolute path"},
		{"[daemon]\nsocket = ./d.sock\n", "[daemon] socket: ", "not an absolute path"},
		{"[daemon]\nevents-log = events.jsonl\n", "[daemon] events-log: ", "not an absolute path"},
		{"[daemon]\nevents-dir = ~/events.d\n", "[daemon] events-dir: ", "not an absolute path"},
		{"[store]\npath =\n", "[store] path: ", "empty value"},
		{"[libvirt]\nuri = qemu:// /system\n", "[libvirt] uri: ", "not a libvirt URI"},
		{"[store]\npath = /x\\\n", "[store] path: ", ""},
		{"[store]\npath = /srv/x # the old disk\n", "[store] path: ", "comments go on lines of their own"},
		{"[daemon]\nmax-parallel-jobs = 2\t# two\n", "[daemon] max-parallel-jobs: ", "comment after the value"},
	};
	for (const Case &c : cases) {
		std::string e = errorOf(c.text);
		EXPECT_NE(e.find(c.key), std::string::npos) << "for:\n" << c.text << "got: " << e;
		EXPECT_NE(e.find(c.problem), std::string::npos) << "for:\n" << c.text << "got: " << e;
	}
}

TEST_F(ConfigTest, TheErrorCodeSaysWhatKindOfProblem)
{
	auto bad = loadConfig(write("bad.conf", "[daemon]\nmax-parallel-jobs = 0\n"));
	ASSERT_FALSE(bad);
	EXPECT_EQ(bad.error().code, "InvalidParameterValue");
	auto directory = loadConfig(dir_);
	ASSERT_FALSE(directory);
	EXPECT_EQ(directory.error().code, "IOError");
	EXPECT_NE(directory.error().message.find(dir_.string() + ": cannot read: not a regular file"),
		  std::string::npos)
		<< directory.error().message;
}

TEST_F(ConfigTest, AFifoNamedByMistakeDoesNotHang)
{
	fs::path fifo = dir_ / "fifo";
	ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
	auto c = loadConfig(fifo);
	ASSERT_FALSE(c);
	EXPECT_NE(c.error().message.find("not a regular file"), std::string::npos) << c.error().message;
}

TEST_F(ConfigTest, AHugeFileIsRefused)
{
	auto c = loadConfig(write("huge.conf", "[store]\n" + std::string(2 << 20, '#') + "\n"));
	ASSERT_FALSE(c);
	EXPECT_NE(c.error().message.find("larger than"), std::string::npos) << c.error().message;
}

TEST_F(ConfigTest, DefaultPathFollowsTheEnvironment)
{
	EXPECT_EQ(defaultConfigPath(), "/etc/virtsnap/virtsnap.conf");
	::setenv("VIRTSNAP_CONFIG", "", 1);
	EXPECT_EQ(defaultConfigPath(), "/etc/virtsnap/virtsnap.conf");
	::setenv("VIRTSNAP_CONFIG", "/srv/other.conf", 1);
	EXPECT_EQ(defaultConfigPath(), "/srv/other.conf");
}

TEST_F(ConfigTest, EnvironmentBeatsTheFile)
{
	fs::path p = write("file.conf", "[store]\npath = /from/file\nkey-file = /from/file.key\n"
					"[daemon]\nsocket = /from/file.sock\nmax-parallel-jobs = 5\n");
	::setenv("VIRTSNAP_CONFIG", p.c_str(), 1);
	auto fileOnly = loadEffectiveConfig();
	ASSERT_TRUE(fileOnly) << fileOnly.error().toString();
	EXPECT_EQ(fileOnly->storePath, "/from/file");
	EXPECT_EQ(fileOnly->keyFile, "/from/file.key");
	EXPECT_EQ(fileOnly->socket, "/from/file.sock");

	::setenv("VIRTSNAP_STORE", "/from/env", 1);
	::setenv("VIRTSNAP_KEY_FILE", "/from/env.key", 1);
	::setenv("VIRTSNAP_SOCKET", "/from/env.sock", 1);
	auto withEnv = loadEffectiveConfig();
	ASSERT_TRUE(withEnv) << withEnv.error().toString();
	EXPECT_EQ(withEnv->storePath, "/from/env");
	EXPECT_EQ(withEnv->keyFile, "/from/env.key");
	EXPECT_EQ(withEnv->socket, "/from/env.sock");
	EXPECT_EQ(withEnv->maxParallelJobs, 5u) << "what the environment does not say still comes from the file";

	// An empty variable is no variable (as before the config file existed).
	::setenv("VIRTSNAP_STORE", "", 1);
	auto emptyEnv = loadEffectiveConfig();
	ASSERT_TRUE(emptyEnv) << emptyEnv.error().toString();
	EXPECT_EQ(emptyEnv->storePath, "/from/file");
}

// The store may be a URL; the state directory follows where the store is.
TEST_F(ConfigTest, StoreUrlsStateDirAndS3Credentials)
{
	auto c = loadConfig(write("remote.conf", "[store]\npath = rados://virtsnap/host-a?conf=/etc/ceph/ceph.conf\n"
						 "state-dir = /srv/state\n[s3]\ncredentials-file = /etc/virtsnap/s3.cred\n"));
	ASSERT_TRUE(c) << c.error().toString();
	EXPECT_EQ(c->storePath, "rados://virtsnap/host-a?conf=/etc/ceph/ceph.conf");
	EXPECT_EQ(c->stateDir, "/srv/state");
	EXPECT_EQ(c->s3CredentialsFile, "/etc/virtsnap/s3.cred");
	for (const char *ok : {"s3://bucket/p?endpoint=http://127.0.0.1:7480", "file:///srv/store", "/srv/store"})
		EXPECT_TRUE(loadConfig(write("ok.conf", std::string("[store]\npath = ") + ok + "\n"))) << ok;
	auto bad = loadConfig(write("bad.conf", "[store]\npath = ftp://host/store\n"));
	ASSERT_FALSE(bad);
	EXPECT_NE(bad.error().message.find("unknown scheme"), std::string::npos) << bad.error().message;
	EXPECT_FALSE(loadConfig(write("rel.conf", "[store]\nstate-dir = state\n")));

	EXPECT_EQ(stateDirFor("/var/lib/virtsnap", ""), "/var/lib/virtsnap");
	EXPECT_EQ(stateDirFor("file:///srv/store", ""), "/srv/store");
	EXPECT_EQ(stateDirFor("rados://pool", ""), kRemoteStateDir);
	EXPECT_EQ(stateDirFor("s3://bucket?endpoint=http://x", ""), kRemoteStateDir);
	EXPECT_EQ(stateDirFor("rados://pool", "/srv/state"), "/srv/state");

	::setenv("VIRTSNAP_CONFIG", write("file.conf", "[store]\nstate-dir = /from/file\n").c_str(), 1);
	::setenv("VIRTSNAP_STATE_DIR", "/from/env", 1);
	auto env = loadEffectiveConfig();
	ASSERT_TRUE(env) << env.error().toString();
	EXPECT_EQ(env->stateDir, "/from/env");
}

// [store-target URL]: where copies may go, with the key that opens each.
TEST_F(ConfigTest, StoreTargetsNameTheirKeys)
{
	auto c = loadConfig(write("targets.conf",
				  "[store]\npath = /srv/store\n"
				  "[store-target /srv/dr-store]\nkey-file = /etc/virtsnap/dr.key\n"
				  "[store-target s3://dr/p?endpoint=http://10.0.0.9:7480]\nkey-file = /etc/virtsnap/s3dr.key\n"
				  "s3-credentials-file = /etc/virtsnap/dr.cred\n"));
	ASSERT_TRUE(c) << c.error().toString();
	ASSERT_EQ(c->storeTargets.size(), 2u);
	const StoreTarget *local = findStoreTarget(c->storeTargets, "/srv/dr-store");
	ASSERT_NE(local, nullptr);
	EXPECT_EQ(local->keyFile, "/etc/virtsnap/dr.key");
	EXPECT_TRUE(local->s3CredentialsFile.empty());
	const StoreTarget *s3 = findStoreTarget(c->storeTargets, "s3://dr/p?endpoint=http://10.0.0.9:7480");
	ASSERT_NE(s3, nullptr);
	EXPECT_EQ(s3->s3CredentialsFile, "/etc/virtsnap/dr.cred");
	EXPECT_EQ(findStoreTarget(c->storeTargets, "/srv/dr-store/"), nullptr) << "spelt the same, or not at all";
	EXPECT_TRUE(loadConfig(write("none.conf", "[store]\npath = /srv/store\n"))->storeTargets.empty());

	std::string e = errorOf("[store-target /srv/dr]\ns3-credentials-file = /etc/c\n");
	EXPECT_NE(e.find("[store-target /srv/dr]: key-file is required"), std::string::npos) << e;
	e = errorOf("[store-target /srv/dr]\nkey-file = dr.key\n");
	EXPECT_NE(e.find("[store-target /srv/dr] key-file: 'dr.key' is not an absolute path"), std::string::npos) << e;
	e = errorOf("[store-target ftp://x/y]\nkey-file = /k\n");
	EXPECT_NE(e.find("unknown scheme"), std::string::npos) << e;
	e = errorOf("[store-target]\nkey-file = /k\n");
	EXPECT_NE(e.find("[store-target]: the store '' is not an absolute path"), std::string::npos) << e;
	e = errorOf("[store-target /srv/dr]\nkey-file = /k\npassword = x\n");
	EXPECT_NE(e.find("unknown key 'password'"), std::string::npos) << e;
	e = errorOf("[stroe-target /srv/dr]\nkey-file = /k\n");
	EXPECT_NE(e.find("[store-target URL]"), std::string::npos) << "the known groups name it: " << e;
}

TEST_F(ConfigTest, ConfigOptionBeatsTheVariable)
{
	fs::path fromVariable = write("variable.conf", "[store]\npath = /from/variable\n");
	fs::path fromOption = write("option.conf", "[store]\npath = /from/option\n");
	::setenv("VIRTSNAP_CONFIG", fromVariable.c_str(), 1);
	auto c = loadEffectiveConfig(fromOption);
	ASSERT_TRUE(c) << c.error().toString();
	EXPECT_EQ(c->storePath, "/from/option");
	EXPECT_EQ(c->loadedFrom, fromOption);
}

TEST_F(ConfigTest, AFileNamedExplicitlyMustExist)
{
	auto byOption = loadEffectiveConfig(dir_ / "typo.conf");
	ASSERT_FALSE(byOption);
	EXPECT_NE(byOption.error().message.find((dir_ / "typo.conf").string()), std::string::npos);
	EXPECT_NE(byOption.error().message.find("--config"), std::string::npos) << byOption.error().message;

	::setenv("VIRTSNAP_CONFIG", (dir_ / "typo2.conf").c_str(), 1);
	auto byVariable = loadEffectiveConfig();
	ASSERT_FALSE(byVariable);
	EXPECT_NE(byVariable.error().message.find("$VIRTSNAP_CONFIG"), std::string::npos)
		<< byVariable.error().message;
}

TEST_F(ConfigTest, ErrorsInTheFileComeThroughTheEffectiveConfig)
{
	fs::path p = write("bad.conf", "[daemon]\nhandler-timeout = soon\n");
	auto c = loadEffectiveConfig(p);
	ASSERT_FALSE(c);
	EXPECT_NE(c.error().message.find("[daemon] handler-timeout: 'soon'"), std::string::npos)
		<< c.error().message;
}

TEST(ConfigValueTest, MaxParallelJobs)
{
	EXPECT_EQ(parseMaxParallelJobs("1").value_or(0), 1u);
	EXPECT_EQ(parseMaxParallelJobs("64").value_or(0), 64u);
	for (const char *bad : {"", "0", "65", " 2", "2 ", "+2", "0x2", "1.5", "99999999999999999999"})
		EXPECT_FALSE(parseMaxParallelJobs(bad)) << "'" << bad << "'";
}

TEST(ConfigValueTest, HandlerTimeout)
{
	EXPECT_EQ(parseHandlerTimeout("10").value_or(milliseconds(0)), milliseconds(10'000));
	EXPECT_EQ(parseHandlerTimeout("0.25").value_or(milliseconds(0)), milliseconds(250));
	EXPECT_EQ(parseHandlerTimeout("86400").value_or(milliseconds(0)), milliseconds(86'400'000));
	// Tiny but positive is the shortest timeout there is, never none.
	EXPECT_EQ(parseHandlerTimeout("0.0001").value_or(milliseconds(0)), milliseconds(1));
	for (const char *bad : {"", "0", "-1", "abc", "1e9", "inf", "nan", "5 s"})
		EXPECT_FALSE(parseHandlerTimeout(bad)) << "'" << bad << "'";
}

} // namespace
} // namespace virtsnap::test
