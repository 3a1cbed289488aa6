// Accounts and sharing end to end: two real unix users, each mapped to an
// account by the config file, talking to a real virtsnapd on a real store.
// Snapshots come from import-image (no QEMU needed); restores are compared
// with the file they were imported from, which the test wrote itself.
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "cli_fixture.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;

const std::string kAccountA = "111111111111";
const std::string kAccountB = "222222222222";

// A system user in the group virtsnap (so the socket lets it in), removed
// with the object.
struct TestUser {
	std::string name;
	uid_t uid = 0;
	gid_t gid = 0;
	~TestUser() { remove(); }
	void remove()
	{
		if (uid != 0)
			runCommand({"userdel", name});
		uid = 0;
	}
};

class AccountsTest : public CliTest
{
protected:
	AccountsTest() : CliTest("vs-accounts") { cliSocket_ = socket_; }

	void SetUp() override
	{
		REQUIRE_TOOL("useradd");
		REQUIRE_TOOL("groupadd");
		REQUIRE_TOOL("setpriv");
		REQUIRE_TOOL("qemu-img");
		if (getuid() != 0)
			GTEST_SKIP() << "needs root to create users";
		std::string out;
		madeGroup_ = !getgrnam("virtsnap");
		if (madeGroup_) {
			ASSERT_EQ(runCommand({"groupadd", "--system", "virtsnap"}, &out), 0) << out;
		}
		for (auto [user, letter] : {std::pair{&alice_, "a"}, std::pair{&bob_, "b"}, std::pair{&carol_, "c"}}) {
			user->name = "vsacct" + std::string(letter) + std::to_string(getpid() % 100000);
			ASSERT_EQ(runCommand({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
					      "-g", "virtsnap", user->name},
					     &out),
				  0)
				<< out;
			struct passwd *pw = getpwnam(user->name.c_str());
			ASSERT_TRUE(pw);
			user->uid = pw->pw_uid;
			user->gid = pw->pw_gid;
			fs::create_directories(homeOf(*user));
			ASSERT_EQ(::chown(homeOf(*user).c_str(), user->uid, user->gid), 0);
		}
		fs::permissions(tmp_.path(), fs::perms::others_exec, fs::perm_options::add);

		// In process, as root: the store, its default account, two more.
		CliResult init = cli({"init"}, tmp_.file("no-daemon.sock"));
		ASSERT_EQ(init.status, 0) << init.err;
		defaultAccount_ = init.json().getString("AccountId").value_or("");
		ASSERT_EQ(defaultAccount_.size(), 12u) << init.out;
		for (const std::string &id : {kAccountA, kAccountB}) {
			std::string key = tmp_.file("keys/" + id + ".key");
			CliResult made = cli({"create-account", "--account-id", id, "--account-key-file", key},
					     tmp_.file("no-daemon.sock"));
			ASSERT_EQ(made.status, 0) << made.err;
			EXPECT_TRUE(made.json().getBool("KeyCreated").value_or(false)) << made.out;
			struct stat st{};
			ASSERT_EQ(::stat(key.c_str(), &st), 0);
			EXPECT_EQ(st.st_mode & 0777, 0600u);
		}
		// carol is in the group virtsnap, and in no account.
		std::ofstream(config_) << "[account " << kAccountA << "]\nkey-file = " << tmp_.file("keys/" + kAccountA + ".key")
				       << "\nusers = " << alice_.name << "\n\n[account " << kAccountB
				       << "]\nkey-file = " << tmp_.file("keys/" + kAccountB + ".key")
				       << "\nusers = " << bob_.name << "\n";
		ASSERT_TRUE(daemon_.start());
	}

	void TearDown() override
	{
		daemon_.stop();
		alice_.remove();
		bob_.remove();
		carol_.remove();
		if (madeGroup_)
			runCommand({"groupdel", "virtsnap"});
	}

	std::string daemonLog()
	{
		std::ifstream in(daemon_.options().logFile);
		return std::string(std::istreambuf_iterator<char>(in), {});
	}

	std::string homeOf(const TestUser &u) { return tmp_.file("home-" + u.name); }

	// Every file under `dir` with its size: what a refused command must
	// leave as it was.
	static std::map<std::string, uintmax_t> treeOf(const std::string &dir)
	{
		std::map<std::string, uintmax_t> out;
		std::error_code ec;
		for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
		     it.increment(ec))
			if (it->is_regular_file())
				out[it->path().string()] = it->file_size();
		return out;
	}

	// virtsnap as `u`, through the daemon.
	CliResult as(const TestUser &u, std::vector<std::string> args)
	{
		std::vector<std::string> argv{"--reuid", std::to_string(u.uid), "--regid", std::to_string(u.gid),
					      "--clear-groups", std::getenv("VIRTSNAP_BIN"), "--socket", socket_,
					      "--store", storeDir_};
		argv.insert(argv.end(), args.begin(), args.end());
		CliResult r;
		std::string out;
		std::string errFile = tmp_.file("stderr.txt");
		std::string command = "setpriv";
		for (const std::string &a : argv)
			command += " '" + a + "'";
		r.status = runCommand({"sh", "-c", command + " 2>" + errFile}, &out);
		r.out = out;
		std::ifstream in(errFile);
		r.err.assign(std::istreambuf_iterator<char>(in), {});
		return r;
	}

	// The ids describe-snapshots lists for `u` (root: nullptr).
	std::vector<std::string> visibleTo(const TestUser *u, std::vector<std::string> more = {})
	{
		std::vector<std::string> args{"describe-snapshots"};
		args.insert(args.end(), more.begin(), more.end());
		CliResult r = u ? as(*u, args) : cli(args);
		EXPECT_EQ(r.status, 0) << r.err;
		std::vector<std::string> ids;
		Json list = r.json().get("Snapshots");
		for (size_t i = 0; i < list.size(); i++)
			ids.push_back(list.at(i).getString("SnapshotId").value_or(""));
		return ids;
	}

	static bool has(const std::vector<std::string> &ids, const std::string &id)
	{
		return std::find(ids.begin(), ids.end(), id) != ids.end();
	}

	// One line, naming the code.
	static ::testing::AssertionResult refused(const CliResult &r, const std::string &code)
	{
		if (r.status == 0)
			return ::testing::AssertionFailure() << "succeeded: " << r.out;
		if (r.err.find(code) == std::string::npos || std::count(r.err.begin(), r.err.end(), '\n') != 1)
			return ::testing::AssertionFailure() << "not one line with " << code << ": " << r.err;
		return ::testing::AssertionSuccess();
	}

	std::string socket_ = tmp_.file("virtsnapd.sock");
	std::string config_ = tmp_.file("virtsnap.conf");
	Virtsnapd daemon_{daemonOptions(socket_, {"--config", config_})};
	// Before the users: released once they are gone.
	HostUsersLock usersLock_;
	bool madeGroup_ = false;
	std::string defaultAccount_;
	TestUser alice_, bob_, carol_;
};

TEST_F(AccountsTest, SnapshotsAreTheirAccountsUntilShared)
{
	// alice's disk: 3 MiB of random bytes and a hole, written here.
	std::string image = homeOf(alice_) + "/disk.raw";
	{
		std::ofstream out(image, std::ios::binary);
		std::mt19937_64 rng(12);
		std::vector<uint8_t> buf(kMiB);
		for (int m = 0; m < 3; m++) {
			fillRandom(rng, buf);
			out.write(reinterpret_cast<const char *>(buf.data()), std::streamsize(buf.size()));
		}
	}
	fs::resize_file(image, 4 * kMiB);
	ASSERT_EQ(::chown(image.c_str(), alice_.uid, alice_.gid), 0);
	CliResult imported = as(alice_, {"import-image", "--file", image, "--format", "raw"});
	ASSERT_EQ(imported.status, 0) << imported.err;
	const std::string snap = imported.json().getString("SnapshotId").value_or("");
	ASSERT_FALSE(snap.empty()) << imported.out;
	EXPECT_EQ(imported.json().getString("OwnerId"), kAccountA) << imported.out;
	EXPECT_EQ(imported.json().getBool("Encrypted"), false) << imported.out;
	EXPECT_TRUE(has(visibleTo(&alice_), snap));
	EXPECT_TRUE(has(visibleTo(&alice_, {"--owner-ids", "self"}), snap));
	EXPECT_TRUE(has(visibleTo(&alice_, {"--filter", "Name=owner-id,Values=" + kAccountA}), snap));

	// Isolation: bob cannot see, restore, copy, read or delete it; root
	// (the default account) cannot either, and carol is in no account.
	std::string bobVolume = homeOf(bob_) + "/restored.raw";
	EXPECT_FALSE(has(visibleTo(&bob_), snap));
	EXPECT_FALSE(has(visibleTo(nullptr), snap));
	for (const std::vector<std::string> &args : std::vector<std::vector<std::string>>{
		     {"describe-snapshots", "--snapshot-id", snap},
		     {"create-volume", "--snapshot-id", snap, "--target", bobVolume, "--format", "raw"},
		     {"copy-snapshot", "--source-snapshot-id", snap},
		     {"list-snapshot-blocks", "--snapshot-id", snap},
		     {"delete-snapshot", "--snapshot-id", snap},
		     {"modify-snapshot-attribute", "--snapshot-id", snap, "--attribute", "createVolumePermission",
		      "--operation-type", "add", "--user-ids", kAccountB},
		     {"create-volume", "--snapshot-id", snap, "--target", bobVolume, "--instant"}})
		EXPECT_TRUE(refused(as(bob_, args), "InvalidSnapshot.NotFound")) << args[0];
	EXPECT_FALSE(fs::exists(bobVolume));
	// Policies act for the default account: not bob's to make.
	EXPECT_TRUE(refused(as(bob_, {"create-lifecycle-policy", "--description", "b", "--policy-details",
				      R"({"ResourceTypes": ["VOLUME"], "TargetTags": [{"Key": "k", "Value": "v"}],
				          "Schedules": [{"Name": "s", "CreateRule": {"Interval": 24, "IntervalUnit": "HOURS"},
				                         "RetainRule": {"Count": 1}}]})"}),
			    "AccessDenied"));
	EXPECT_TRUE(refused(as(carol_, {"describe-snapshots"}), "AccessDenied"));
	EXPECT_TRUE(refused(as(bob_, {"describe-snapshots", "--account", kAccountA}), "AccessDenied"));

	// Bad input changes nothing: an unknown account, a malformed one.
	std::vector<std::string> share{"modify-snapshot-attribute", "--snapshot-id", snap, "--attribute",
				       "createVolumePermission", "--operation-type", "add"};
	auto with = [](std::vector<std::string> base, std::vector<std::string> more) {
		base.insert(base.end(), more.begin(), more.end());
		return base;
	};
	EXPECT_TRUE(refused(as(alice_, with(share, {"--user-ids", "999999999999"})), "InvalidParameterValue"));
	EXPECT_TRUE(refused(as(alice_, with(share, {"--user-ids", "bob"})), "InvalidParameterValue"));
	std::vector<std::string> describeAttribute{"describe-snapshot-attribute", "--snapshot-id", snap, "--attribute",
						   "createVolumePermission"};
	CliResult none = as(alice_, describeAttribute);
	ASSERT_EQ(none.status, 0) << none.err;
	EXPECT_EQ(none.json().get("CreateVolumePermissions").size(), 0u) << none.out;

	// Shared with bob: bob sees it (owned by alice's account), restores it
	// bit for bit, and copies it into a snapshot of his own; he may
	// neither delete it nor share it on.
	CliResult shared = as(alice_, with(share, {"--user-ids", kAccountB}));
	ASSERT_EQ(shared.status, 0) << shared.err;
	CliResult listed = as(alice_, describeAttribute);
	ASSERT_EQ(listed.status, 0) << listed.err;
	ASSERT_EQ(listed.json().get("CreateVolumePermissions").size(), 1u) << listed.out;
	EXPECT_EQ(listed.json().get("CreateVolumePermissions").at(0).getString("UserId"), kAccountB) << listed.out;
	EXPECT_TRUE(has(visibleTo(&bob_), snap));
	EXPECT_TRUE(has(visibleTo(&bob_, {"--restorable-by-user-ids", kAccountB}), snap));
	EXPECT_FALSE(has(visibleTo(&bob_, {"--owner-ids", "self"}), snap));
	EXPECT_FALSE(has(visibleTo(nullptr), snap)) << "shared with bob only";
	CliResult seen = as(bob_, {"describe-snapshots", "--snapshot-id", snap});
	ASSERT_EQ(seen.status, 0) << seen.err;
	EXPECT_EQ(seen.json().get("Snapshots").at(0).getString("OwnerId"), kAccountA) << seen.out;
	CliResult restored = as(bob_, {"create-volume", "--snapshot-id", snap, "--target", bobVolume, "--format", "raw"});
	ASSERT_EQ(restored.status, 0) << restored.err;
	EXPECT_TRUE(sameImage(bobVolume, "raw", image));
	CliResult copied = as(bob_, {"copy-snapshot", "--source-snapshot-id", snap, "--wait"});
	ASSERT_EQ(copied.status, 0) << copied.err << daemonLog();
	const std::string copy = copied.json().getString("SnapshotId").value_or("");
	ASSERT_FALSE(copy.empty()) << copied.out;
	EXPECT_EQ(copied.json().getString("OwnerId"), kAccountB) << copied.out;
	EXPECT_FALSE(has(visibleTo(&alice_), copy)) << "a copy is the copier's and shares nothing";
	EXPECT_TRUE(refused(as(bob_, {"delete-snapshot", "--snapshot-id", snap}), "AccessDenied"));
	EXPECT_TRUE(refused(as(bob_, with(share, {"--group-names", "all"})), "AccessDenied"));
	EXPECT_TRUE(refused(as(bob_, describeAttribute), "AccessDenied"));

	// Public: every account sees it, root's default one too.
	ASSERT_EQ(as(alice_, with(share, {"--group-names", "all"})).status, 0);
	EXPECT_TRUE(has(visibleTo(nullptr), snap));
	EXPECT_TRUE(has(visibleTo(nullptr, {"--restorable-by-user-ids", defaultAccount_}), snap));

	// Every permission taken back: invisible again to bob and root.
	std::vector<std::string> unshare{"modify-snapshot-attribute", "--snapshot-id", snap, "--attribute",
					 "createVolumePermission", "--operation-type", "remove", "--user-ids", kAccountB};
	ASSERT_EQ(as(alice_, unshare).status, 0);
	EXPECT_TRUE(has(visibleTo(&bob_), snap)) << "still public";
	CliResult reset = as(alice_, {"reset-snapshot-attribute", "--snapshot-id", snap, "--attribute",
				      "createVolumePermission"});
	ASSERT_EQ(reset.status, 0) << reset.err;
	EXPECT_FALSE(has(visibleTo(&bob_), snap));
	EXPECT_FALSE(has(visibleTo(nullptr), snap));
	EXPECT_TRUE(refused(as(bob_, {"create-volume", "--snapshot-id", snap, "--target", bobVolume + ".2", "--format",
				      "raw"}),
			    "InvalidSnapshot.NotFound"));
	EXPECT_TRUE(has(visibleTo(&bob_), copy)) << "bob's copy stays his";

	// Each change of permissions was a shareSnapshot event (the log is
	// written by the dispatcher's thread: wait for it, up to 10 s).
	std::string events;
	size_t shares = 0;
	for (int tries = 0; tries < 100 && shares < 4; tries++) {
		if (tries > 0)
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		std::ifstream log(daemon_.options().eventsLog);
		events.assign(std::istreambuf_iterator<char>(log), {});
		shares = 0;
		for (size_t at = events.find("\"shareSnapshot\""); at != std::string::npos;
		     at = events.find("\"shareSnapshot\"", at + 1))
			shares++;
	}
	EXPECT_EQ(shares, 4u) << events;
	EXPECT_NE(events.find(snap), std::string::npos);

	// The owner deletes it.
	CliResult deleted = as(alice_, {"delete-snapshot", "--snapshot-id", snap});
	EXPECT_EQ(deleted.status, 0) << deleted.err;
}

// Recycle Bin rules are their account's: alice's rule is hers to list and
// lock, and does not exist for bob nor for root's default account.
TEST_F(AccountsTest, RecycleBinRulesAreTheirAccounts)
{
	CliResult made = as(alice_, {"create-rule", "--retention-period",
				     "RetentionPeriodValue=7,RetentionPeriodUnit=DAYS", "--description", "by alice"});
	ASSERT_EQ(made.status, 0) << made.err;
	const std::string rule = made.json().getString("Identifier").value_or("");
	ASSERT_FALSE(rule.empty()) << made.out;
	ASSERT_EQ(as(alice_, {"lock-rule", "--identifier", rule, "--lock-configuration",
			      "UnlockDelay={UnlockDelayValue=7,UnlockDelayUnit=DAYS}"})
			  .status,
		  0);
	auto rulesOf = [&](const TestUser *u) {
		CliResult r = u ? as(*u, {"list-rules"}) : cli({"list-rules"});
		EXPECT_EQ(r.status, 0) << r.err;
		return r.json().get("Rules").size();
	};
	EXPECT_EQ(rulesOf(&alice_), 1u);
	EXPECT_EQ(rulesOf(&bob_), 0u);
	EXPECT_EQ(rulesOf(nullptr), 0u) << "root acts as the default account";
	for (const std::vector<std::string> &args : std::vector<std::vector<std::string>>{
		     {"get-rule", "--identifier", rule},
		     {"unlock-rule", "--identifier", rule},
		     {"delete-rule", "--identifier", rule},
		     {"update-rule", "--identifier", rule, "--description", "by bob"}})
		EXPECT_TRUE(refused(as(bob_, args), "ResourceNotFoundException")) << args[0];
	EXPECT_TRUE(refused(cli({"unlock-rule", "--identifier", rule}), "ResourceNotFoundException"));
	CliResult asA = cli({"get-rule", "--identifier", rule, "--account", kAccountA});
	ASSERT_EQ(asA.status, 0) << asA.err;
	EXPECT_EQ(asA.json().getString("Description"), "by alice") << asA.out;
	EXPECT_EQ(asA.json().getString("LockState"), "locked") << asA.out;
}

// KMS-style keys: alice's encrypted snapshot (an import copied --encrypted
// under a key of hers) shared with bob is unreadable to him until alice
// grants him its key; then he copies it into his own default key and
// restores his copy bit-exact after alice's original is gone and gc ran.
TEST_F(AccountsTest, AnEncryptedSnapshotSharedNeedsAGrantOnItsKey)
{
	std::string image = homeOf(alice_) + "/disk.raw";
	{
		std::ofstream out(image, std::ios::binary);
		std::mt19937_64 rng(21);
		std::vector<uint8_t> buf(kMiB);
		for (int m = 0; m < 2; m++) {
			fillRandom(rng, buf);
			out.write(reinterpret_cast<const char *>(buf.data()), std::streamsize(buf.size()));
		}
	}
	fs::resize_file(image, 3 * kMiB);
	ASSERT_EQ(::chown(image.c_str(), alice_.uid, alice_.gid), 0);

	CliResult key = as(alice_, {"create-key", "--description", "for alice"});
	ASSERT_EQ(key.status, 0) << key.err;
	const std::string ka = key.json().get("KeyMetadata").getString("KeyId").value_or("");
	ASSERT_EQ(ka.size(), 16u) << key.out;
	EXPECT_EQ(key.json().get("KeyMetadata").getString("AWSAccountId"), kAccountA) << key.out;
	EXPECT_EQ(key.json().get("KeyMetadata").getString("KeyState"), "Enabled") << key.out;

	CliResult imported = as(alice_, {"import-image", "--file", image, "--format", "raw"});
	ASSERT_EQ(imported.status, 0) << imported.err;
	const std::string plain = imported.json().getString("SnapshotId").value_or("");
	CliResult sealed = as(alice_, {"copy-snapshot", "--source-snapshot-id", plain, "--encrypted", "--kms-key-id",
				       ka, "--wait"});
	ASSERT_EQ(sealed.status, 0) << sealed.err << daemonLog();
	const std::string snap = sealed.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(sealed.json().getBool("Encrypted"), true) << sealed.out;
	EXPECT_EQ(sealed.json().getString("KmsKeyId"), ka) << sealed.out;

	// Bad input, one line each, nothing changed: a key bob may not use, an
	// unknown key, a grantee that is no account, and another's key as
	// bob's --kms-key-id.
	auto before = treeOf(storeDir_ + "/records");
	EXPECT_TRUE(refused(as(bob_, {"create-grant", "--key-id", ka, "--grantee-account", kAccountB}),
			    "NotFoundException"));
	EXPECT_TRUE(refused(as(alice_, {"create-grant", "--key-id", "0123456789abcdef", "--grantee-account", kAccountB}),
			    "NotFoundException"));
	EXPECT_TRUE(refused(as(alice_, {"create-grant", "--key-id", ka, "--grantee-account", "999999999999"}),
			    "InvalidParameterValue"));
	EXPECT_TRUE(refused(as(bob_, {"copy-snapshot", "--source-snapshot-id", plain, "--wait"}),
			    "InvalidSnapshot.NotFound"));
	EXPECT_EQ(treeOf(storeDir_ + "/records"), before);

	// Shared without a grant: bob sees it, and every read is refused,
	// naming the key.
	ASSERT_EQ(as(alice_, {"modify-snapshot-attribute", "--snapshot-id", snap, "--attribute", "createVolumePermission",
			      "--operation-type", "add", "--user-ids", kAccountB})
			  .status,
		  0);
	EXPECT_TRUE(has(visibleTo(&bob_), snap));
	std::string bobVolume = homeOf(bob_) + "/restored.qcow2";
	for (const std::vector<std::string> &args : std::vector<std::vector<std::string>>{
		     {"copy-snapshot", "--source-snapshot-id", snap, "--wait"},
		     {"list-snapshot-blocks", "--snapshot-id", snap},
		     {"create-volume", "--snapshot-id", snap, "--target", bobVolume}}) {
		CliResult r = as(bob_, args);
		EXPECT_TRUE(refused(r, "AccessDenied")) << args[0];
		EXPECT_NE(r.err.find(ka), std::string::npos) << args[0] << ": " << r.err;
	}

	// Granted: bob may copy it (into his own default key), never restore
	// the original.
	CliResult grant = as(alice_, {"create-grant", "--key-id", ka, "--grantee-account", kAccountB});
	ASSERT_EQ(grant.status, 0) << grant.err;
	EXPECT_EQ(grant.json().getString("GrantId").value_or("").size(), 64u) << grant.out;
	CliResult bobKeys = as(bob_, {"describe-keys"});
	ASSERT_EQ(bobKeys.status, 0) << bobKeys.err;
	EXPECT_NE(bobKeys.out.find(ka), std::string::npos) << "granted keys are listed";
	EXPECT_TRUE(refused(as(bob_, {"create-volume", "--snapshot-id", snap, "--target", bobVolume}), "AccessDenied"));
	CliResult copied = as(bob_, {"copy-snapshot", "--source-snapshot-id", snap, "--wait"});
	ASSERT_EQ(copied.status, 0) << copied.err << daemonLog();
	const std::string copy = copied.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(copied.json().getString("OwnerId"), kAccountB) << copied.out;
	const std::string kb = copied.json().getString("KmsKeyId").value_or("");
	EXPECT_EQ(kb.size(), 16u) << copied.out;
	EXPECT_NE(kb, ka) << "a copy of a key of someone else's goes under the copier's default key";

	// alice's snapshots gone, gc run: bob's copy restores bit for bit.
	ASSERT_EQ(as(alice_, {"delete-snapshot", "--snapshot-id", snap}).status, 0);
	ASSERT_EQ(as(alice_, {"delete-snapshot", "--snapshot-id", plain}).status, 0);
	CliResult gc = cli({"gc", "--grace-seconds", "0"});
	ASSERT_EQ(gc.status, 0) << gc.err;
	std::string secret = homeOf(bob_) + "/secret";
	{
		std::ofstream(secret) << "bob's passphrase";
	}
	ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
	ASSERT_EQ(::chown(secret.c_str(), bob_.uid, bob_.gid), 0);
	CliResult restored =
		as(bob_, {"create-volume", "--snapshot-id", copy, "--target", bobVolume, "--encryption-secret-file", secret});
	ASSERT_EQ(restored.status, 0) << restored.err;
	std::string out;
	EXPECT_EQ(runCommand({"qemu-img", "compare", "--object", "secret,id=sec0,file=" + secret + ",format=raw",
			      "--image-opts", "driver=qcow2,file.filename=" + bobVolume + ",encrypt.key-secret=sec0",
			      "driver=raw,file.filename=" + image},
			     &out),
		  0)
		<< out;
}

TEST_F(AccountsTest, DescribeAccountsListsTheDefaultFirst)
{
	CliResult r = cli({"describe-accounts"});
	ASSERT_EQ(r.status, 0) << r.err;
	Json list = r.json().get("Accounts");
	ASSERT_EQ(list.size(), 3u) << r.out;
	EXPECT_EQ(list.at(0).getString("AccountId"), defaultAccount_);
	EXPECT_EQ(list.at(0).getBool("Default"), true);
	EXPECT_EQ(list.at(1).getString("AccountId"), kAccountA);
	EXPECT_EQ(list.at(1).get("Users").at(0).asString(), alice_.name) << r.out;
	EXPECT_TRUE(refused(as(alice_, {"create-account", "--account-key-file", homeOf(alice_) + "/k.key"}),
			    "AccessDenied"));
	EXPECT_TRUE(refused(cli({"create-account", "--account-id", kAccountA, "--account-key-file",
				 tmp_.file("keys/again.key")}),
			    "InvalidParameterValue"));
	EXPECT_FALSE(fs::exists(homeOf(alice_) + "/k.key"));
}

} // namespace
} // namespace virtsnap::test
