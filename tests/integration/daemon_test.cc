// virtsnapd end to end: a real daemon on its own socket, a real QEMU, the
// virtsnap binary as client. Creates answer pending before the data moves;
// limits, filters, idempotency, deferred deletes, the three event paths,
// restart after SIGKILL, and a socket closed to users outside the group.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "cli_fixture.h"
#include "tests/support/qemu_instance.h"
#include "tests/support/qemu_residue.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;
using Clock = std::chrono::steady_clock;

class DaemonTest : public QemuCliTest
{
protected:
	// Every command goes to this test's daemon, or runs in process when
	// none is running.
	DaemonTest() : QemuCliTest("vs-daemon") { cliSocket_ = socket_; }

	void SetUp() override
	{
		REQUIRE_QEMU();
		fs::create_directories(eventsDir_);
		ASSERT_EQ(cli({"init"}).status, 0);
	}

	void TearDown() override { daemon_.stop(); }

	// A disk of `dataMiB` random MiB (then zeros up to `sizeMiB`).
	void startQemu(uint64_t dataMiB, uint64_t sizeMiB, int disks = 1)
	{
		QemuOptions opts;
		for (int d = 0; d < disks; d++) {
			std::string raw = tmp_.file("disk" + std::to_string(d) + ".raw");
			{
				std::ofstream out(raw, std::ios::binary);
				std::mt19937_64 rng(uint64_t(d) + 1);
				std::vector<uint8_t> buf(kMiB);
				for (uint64_t m = 0; m < dataMiB; m++) {
					fillRandom(rng, buf);
					out.write(reinterpret_cast<const char *>(buf.data()), kMiB);
				}
			}
			fs::resize_file(raw, sizeMiB * kMiB);
			std::string qcow = tmp_.file("disk" + std::to_string(d) + ".qcow2");
			std::string error;
			ASSERT_TRUE(convertImage(raw, "raw", qcow, "qcow2", &error)) << error;
			fs::remove(raw);
			opts.disks.push_back({qcow, "qcow2", std::string("vd") + char('a' + d)});
		}
		opts.name = "vs-daemon";
		std::string error;
		vm_ = QemuInstance::start(opts, &error);
		ASSERT_TRUE(vm_) << error;
	}

	CliResult create(std::vector<std::string> extra = {})
	{
		std::vector<std::string> args{"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda"};
		args.insert(args.end(), extra.begin(), extra.end());
		return cli(args);
	}

	Json describe(const std::string &id)
	{
		return cli({"describe-snapshots", "--snapshot-id", id}).json().get("Snapshots").at(0);
	}

	std::string waitState(const std::string &id, std::chrono::seconds timeout = std::chrono::seconds(120))
	{
		return waitWhilePending([&] { return describe(id).getString("State").value_or(""); }, timeout);
	}

	// A small QEMU, the daemon, and the id of one completed snapshot taken
	// through it.
	std::string completedSnapshot()
	{
		startQemu(4, 16);
		if (HasFatalFailure() || !daemon_.start())
			return "";
		CliResult r = create();
		EXPECT_EQ(r.status, 0) << r.err;
		std::string id = r.json().getString("SnapshotId").value_or("");
		EXPECT_EQ(waitState(id), "completed");
		return id;
	}

	std::string socket_ = tmp_.file("virtsnapd.sock");
	// As daemonOptions() names them.
	std::string eventsLog_ = tmp_.file("events/events.jsonl");
	std::string eventsDir_ = tmp_.file("events.d");
	// Declared after vm_, so stopped before QEMU goes.
	Virtsnapd daemon_{daemonOptions(socket_, {"--handler-timeout", "2"})};
};

TEST_F(DaemonTest, CreateAnswersPendingBeforeTheDataMovesThenCompletes)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(1024, 1536));
	ASSERT_TRUE(daemon_.start());
	auto started = Clock::now();
	CliResult r = create({"--description", "big", "--tag", "early=1", "--tag", "kept=2"});
	double answered = std::chrono::duration<double>(Clock::now() - started).count();
	ASSERT_EQ(r.status, 0) << r.err;
	Json snap = r.json();
	std::string id = snap.getString("SnapshotId").value_or("");
	EXPECT_EQ(snap.getString("State"), "pending");
	EXPECT_NE(snap.getString("Progress"), "100%");
	// gc never sweeps under a snapshot in flight: it relies on chunks of
	// its parent, which may have just been deleted.
	CliResult gc = cli({"gc", "--grace-seconds", "0"});
	EXPECT_EQ(gc.status, 1);
	EXPECT_NE(gc.err.find("in flight"), std::string::npos) << gc.err;
	// Tags change while it is pending, as on EBS, and the change holds.
	CliResult tagged = cli({"create-tags", "--resource", id, "--tag", "late=3", "--tag", "kept=4"});
	EXPECT_EQ(tagged.status, 0) << tagged.err;
	CliResult untagged = cli({"delete-tags", "--resource", id, "--tag", "early"});
	EXPECT_EQ(untagged.status, 0) << untagged.err;
	EXPECT_EQ(describe(id).getString("State"), "pending") << "the tags were not given while pending";
	EXPECT_EQ(waitState(id), "completed");
	double finished = std::chrono::duration<double>(Clock::now() - started).count();
	std::printf("create answered in %.2f s, completed after %.2f s\n", answered, finished);
	EXPECT_LT(answered * 3, finished) << "the answer did not come before the data moved";
	Json done = describe(id);
	EXPECT_EQ(done.getString("Progress"), "100%");
	EXPECT_GT(done.getInt("BytesAdded").value_or(0), int64_t(1000 * kMiB));
	std::string left = toString(residue());
	EXPECT_EQ(left.find("vs"), std::string::npos) << left;
	// In the manifest too: a catalog rebuilt from the store has them.
	daemon_.stop();
	ASSERT_EQ(cli({"catalog", "rebuild"}).status, 0);
	EXPECT_EQ(describe(id).get("Tags").dump(),
		  R"([{"Key":"kept","Value":"4"},{"Key":"late","Value":"3"}])");
}

TEST_F(DaemonTest, PendingLimitIsFivePerVolumeAndOneForSt1)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(512, 1024, 2));
	// One transfer at a time: the others stay pending behind it.
	ASSERT_TRUE(daemon_.start({"--max-parallel-jobs", "1"}));
	std::vector<std::string> ids;
	for (int i = 0; i < 5; i++) {
		CliResult r = create();
		ASSERT_EQ(r.status, 0) << r.err;
		ids.push_back(r.json().getString("SnapshotId").value_or(""));
	}
	CliResult sixth = create();
	EXPECT_EQ(sixth.status, 1);
	EXPECT_NE(sixth.err.find("ConcurrentSnapshotLimitExceeded"), std::string::npos) << sixth.err;

	// vdb as st1: one pending at most.
	CliResult vols = cli({"describe-volumes", "--qmp-socket", vm_->qmpSocket()});
	ASSERT_EQ(vols.status, 0) << vols.err;
	std::string vdb;
	for (size_t i = 0; i < vols.json().get("Volumes").size(); i++)
		if (vols.json().get("Volumes").at(i).getString("Disk") == "vdb")
			vdb = vols.json().get("Volumes").at(i).getString("VolumeId").value_or("");
	ASSERT_FALSE(vdb.empty()) << vols.out;
	ASSERT_EQ(cli({"modify-volume", "--volume-id", vdb, "--volume-class", "st1"}).status, 0);
	CliResult first = cli({"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vdb"});
	ASSERT_EQ(first.status, 0) << first.err;
	CliResult second = cli({"create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vdb"});
	EXPECT_EQ(second.status, 1);
	EXPECT_NE(second.err.find("ConcurrentSnapshotLimitExceeded"), std::string::npos) << second.err;
	EXPECT_NE(second.err.find("st1"), std::string::npos) << second.err;

	for (const std::string &id : ids)
		EXPECT_EQ(waitState(id, std::chrono::seconds(300)), "completed") << id;
	EXPECT_EQ(waitState(first.json().getString("SnapshotId").value_or("")), "completed");
	// Completed, the limit frees up again; the queued ones took their own
	// points in time, one after the other, and everything verifies.
	CliResult again = create();
	EXPECT_EQ(again.status, 0) << again.err;
	std::set<std::string> starts;
	for (const std::string &id : ids)
		starts.insert(describe(id).getString("StartTime").value_or(""));
	EXPECT_EQ(starts.size(), ids.size());
	CliResult verified = cli({"verify"});
	EXPECT_EQ(verified.status, 0) << verified.err << verified.out;
	// Nothing in flight any more: the refused requests left no count
	// behind that would keep gc out.
	EXPECT_EQ(waitState(again.json().getString("SnapshotId").value_or("")), "completed");
	CliResult gc = cli({"gc"});
	EXPECT_EQ(gc.status, 0) << gc.err;
}

TEST_F(DaemonTest, FiltersPagingIdempotencyAndDeleteWhilePending)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(256, 512));
	ASSERT_TRUE(daemon_.start({"--max-parallel-jobs", "1"}));
	CliResult a = create({"--description", "nightly run", "--tag", "env=prod", "--name", "nightly-1", "--wait"});
	ASSERT_EQ(a.status, 0) << a.err;
	std::string idA = a.json().getString("SnapshotId").value_or("");
	EXPECT_EQ(a.json().getString("State"), "completed");
	CliResult b = create({"--description", "manual", "--tag", "owner=ops", "--client-token", "tok-1"});
	ASSERT_EQ(b.status, 0) << b.err;
	std::string idB = b.json().getString("SnapshotId").value_or("");

	// The same token again: the same snapshot; other parameters: refused.
	CliResult again = create({"--description", "manual", "--tag", "owner=ops", "--client-token", "tok-1"});
	ASSERT_EQ(again.status, 0) << again.err;
	EXPECT_EQ(again.json().getString("SnapshotId"), idB);
	CliResult mismatch = create({"--description", "other", "--client-token", "tok-1"});
	EXPECT_EQ(mismatch.status, 1);
	EXPECT_NE(mismatch.err.find("IdempotentParameterMismatch"), std::string::npos) << mismatch.err;

	EXPECT_EQ(waitState(idB), "completed");
	auto ids = [&](std::vector<std::string> filters) {
		std::vector<std::string> args{"describe-snapshots"};
		for (const std::string &f : filters)
			args.insert(args.end(), {"--filter", f});
		CliResult r = cli(args);
		EXPECT_EQ(r.status, 0) << r.err;
		std::set<std::string> out;
		for (size_t i = 0; i < r.json().get("Snapshots").size(); i++)
			out.insert(r.json().get("Snapshots").at(i).getString("SnapshotId").value_or(""));
		return out;
	};
	std::string vol = a.json().getString("VolumeId").value_or("");
	EXPECT_EQ(ids({"Name=status,Values=completed"}), (std::set<std::string>{idA, idB}));
	EXPECT_EQ(ids({"Name=status,Values=pending,error"}), std::set<std::string>{});
	EXPECT_EQ(ids({"Name=volume-id,Values=" + vol}), (std::set<std::string>{idA, idB}));
	EXPECT_EQ(ids({"Name=snapshot-id,Values=" + idA}), std::set<std::string>{idA});
	EXPECT_EQ(ids({"Name=description,Values=night*"}), std::set<std::string>{idA});
	EXPECT_EQ(ids({"Name=tag:env,Values=prod"}), std::set<std::string>{idA});
	EXPECT_EQ(ids({"Name=tag-key,Values=owner"}), std::set<std::string>{idB});
	// OwnerId is the owning account (root's: the store's default), no
	// longer a uid.
	std::string owner = a.json().getString("OwnerId").value_or("");
	EXPECT_EQ(owner.size(), 12u) << a.out;
	EXPECT_EQ(ids({"Name=owner-id,Values=" + owner}), (std::set<std::string>{idA, idB}));
	EXPECT_EQ(ids({"Name=owner-id,Values=" + std::to_string(getuid())}), std::set<std::string>{});
	EXPECT_EQ(ids({"Name=start-time,Values=" + a.json().getString("StartTime").value_or("")}),
		  std::set<std::string>{idA});
	EXPECT_EQ(ids({"Name=tag:env,Values=prod", "Name=tag-key,Values=owner"}), std::set<std::string>{});
	CliResult bad = cli({"describe-snapshots", "--filter", "Name=colour,Values=red"});
	EXPECT_EQ(bad.status, 1);
	EXPECT_NE(bad.err.find("colour"), std::string::npos) << bad.err;
	CliResult badName = create({"--name", "Not_Valid"});
	EXPECT_NE(badName.err.find("InvalidParameterValue"), std::string::npos) << badName.err;

	// Delete while pending: it goes once it completes. To be sure it is
	// pending, it queues behind a full read (the bitmap is gone).
	Json drop = Json::object();
	drop.set("node", Json::string("fmt-vda"));
	drop.set("name", Json::string(idB));
	ASSERT_TRUE(vm_->control().execute("block-dirty-bitmap-remove", drop));
	ASSERT_EQ(create().status, 0);
	CliResult c = create();
	ASSERT_EQ(c.status, 0) << c.err;
	std::string idC = c.json().getString("SnapshotId").value_or("");
	CliResult del = cli({"delete-snapshot", "--snapshot-id", idC});
	ASSERT_EQ(del.status, 0) << del.err;
	EXPECT_EQ(del.json().getBool("DeleteOnCompletion"), true);
	auto deadline = Clock::now() + std::chrono::seconds(60);
	while (Clock::now() < deadline && cli({"describe-snapshots", "--snapshot-id", idC}).status == 0)
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	CliResult gone = cli({"describe-snapshots", "--snapshot-id", idC});
	EXPECT_NE(gone.err.find("InvalidSnapshot.NotFound"), std::string::npos) << gone.err;
	EXPECT_FALSE(fs::exists(storeDir_ + "/snapshots/" + idC + ".manifest"));
	// The others still restore, and the store verifies.
	CliResult restored = cli({"create-volume", "--snapshot-id", idB, "--target", tmp_.file("b.raw"), "--format", "raw"});
	EXPECT_EQ(restored.status, 0) << restored.err;
	CliResult verified = cli({"verify"});
	EXPECT_EQ(verified.status, 0) << verified.err << verified.out;
}

TEST_F(DaemonTest, EventsReachTheLogTheHandlersAndSubscribers)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(64, 128));
	std::string seen = tmp_.file("handler-seen");
	fs::create_directories(seen);
	{
		std::ofstream h(eventsDir_ + "/10-record");
		h << "#!/bin/sh\ncat > " << seen << "/$$.json\n";
	}
	{
		std::ofstream h(eventsDir_ + "/20-hang");
		h << "#!/bin/sh\necho $$ > " << seen << "/hung.pid\nsleep 600\n";
	}
	fs::permissions(eventsDir_ + "/10-record", fs::perms::owner_all);
	fs::permissions(eventsDir_ + "/20-hang", fs::perms::owner_all);
	ASSERT_TRUE(daemon_.start());

	// A subscriber, as `virtsnap events --follow` does it.
	std::string followOut = tmp_.file("follow.out");
	pid_t follower = fork();
	if (follower == 0) {
		int out = ::open(followOut.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(out, 1);
		execl(std::getenv("VIRTSNAP_BIN"), "virtsnap", "--socket", socket_.c_str(), "events", "--follow",
		      (char *)nullptr);
		_exit(127);
	}
	std::this_thread::sleep_for(std::chrono::milliseconds(500));

	CliResult one = create({"--wait"});
	ASSERT_EQ(one.status, 0) << one.err;
	std::string id = one.json().getString("SnapshotId").value_or("");
	// A second snapshot's event still arrives although a handler hangs.
	CliResult two = create({"--wait"});
	ASSERT_EQ(two.status, 0) << two.err;
	std::string id2 = two.json().getString("SnapshotId").value_or("");
	std::this_thread::sleep_for(std::chrono::seconds(4));

	std::string log = readFile(eventsLog_);
	EXPECT_NE(log.find(id), std::string::npos) << log;
	EXPECT_NE(log.find(id2), std::string::npos) << log;
	auto first = Json::parse(log.substr(0, log.find('\n')));
	ASSERT_TRUE(first);
	EXPECT_EQ(first->getString("detail-type"), "EBS Snapshot Notification");
	EXPECT_EQ(first->get("detail").getString("event"), "createSnapshot");
	EXPECT_EQ(first->get("detail").getString("result"), "succeeded");
	EXPECT_EQ(first->get("detail").getString("snapshot_id"), id);

	int handled = 0;
	for (auto &e : fs::directory_iterator(seen))
		if (e.path().extension() == ".json" &&
		    readFile(e.path()).find("EBS Snapshot Notification") != std::string::npos)
			handled++;
	EXPECT_EQ(handled, 2) << "the recording handler did not see both events";
	std::string pid = readFile(seen + "/hung.pid");
	ASSERT_FALSE(pid.empty());
	EXPECT_NE(::kill(std::stoi(pid), 0), 0) << "the hung handler was not killed";

	// A set reports once, listing its snapshots.
	CliResult set = cli({"create-snapshots", "--qmp-socket", vm_->qmpSocket(), "--wait"});
	ASSERT_EQ(set.status, 0) << set.err;
	std::string setMember = set.json().get("Snapshots").at(0).getString("SnapshotId").value_or("");
	std::this_thread::sleep_for(std::chrono::milliseconds(500));
	log = readFile(eventsLog_);
	auto last = Json::parse(log.substr(log.rfind('\n', log.size() - 2) + 1));
	ASSERT_TRUE(last) << log;
	EXPECT_EQ(last->getString("detail-type"), "EBS Multi-Volume Snapshots Completion Status");
	EXPECT_EQ(last->get("detail").getString("event"), "createSnapshots");
	EXPECT_EQ(last->get("detail").get("snapshots").at(0).getString("snapshot_id"), setMember);
	EXPECT_EQ(last->get("detail").get("snapshots").at(0).getString("status"), "completed");

	std::string followed = readFile(followOut);
	EXPECT_NE(followed.find(id), std::string::npos) << followed;
	EXPECT_NE(followed.find(id2), std::string::npos) << followed;
	::kill(follower, SIGTERM);
	waitpid(follower, nullptr, 0);
}

// A relative --target is where the caller runs virtsnap, not where the
// daemon does (its working directory is /).
TEST_F(DaemonTest, ARelativeTargetIsTheCallersNotTheDaemons)
{
	std::string id = completedSnapshot();
	ASSERT_FALSE(HasFailure() || id.empty());
	std::string here = tmp_.file("here");
	fs::create_directories(here);
	const char *bin = std::getenv("VIRTSNAP_BIN");
	ASSERT_TRUE(bin);
	std::string out;
	int status = runCommand({"sh", "-c",
				 "cd " + here + " && VIRTSNAP_SOCKET=" + socket_ + " " + bin + " --store " + storeDir_ +
					 " --key-file " + keyFile_ + " create-volume --snapshot-id " + id +
					 " --target restored.raw --format raw"},
				&out);
	ASSERT_EQ(status, 0) << out;
	EXPECT_TRUE(fs::exists(here + "/restored.raw")) << out;
	EXPECT_FALSE(fs::exists("/restored.raw"));
}

// A lock through virtsnapd: deletion refused in one line while it holds,
// the snapshot still listed; root's unlock lets it go.
TEST_F(DaemonTest, ALockedSnapshotIsNotDeletedUntilItIsUnlocked)
{
	std::string id = completedSnapshot();
	ASSERT_FALSE(HasFailure() || id.empty());
	CliResult locked = cli({"lock-snapshot", "--snapshot-id", id, "--lock-mode", "governance", "--lock-duration", "1"});
	ASSERT_EQ(locked.status, 0) << locked.err;
	EXPECT_EQ(locked.json().getString("LockState"), "governance") << locked.out;

	CliResult refused = cli({"delete-snapshot", "--snapshot-id", id});
	EXPECT_EQ(refused.status, 1);
	EXPECT_EQ(refused.err.rfind("virtsnap: SnapshotLocked: snapshot " + id + " is locked (governance) until ", 0), 0u)
		<< refused.err;
	EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
	EXPECT_EQ(describe(id).getString("State"), "completed");
	Json locks = cli({"describe-locked-snapshots", "--filter", "Name=lock-state,Values=governance"}).json();
	ASSERT_EQ(locks.get("Snapshots").size(), 1u) << locks.dump();
	EXPECT_EQ(locks.get("Snapshots").at(0).getString("SnapshotId"), id);
	// A directory store has no immutability of its own: virtsnap says
	// that it alone enforces the lock.
	EXPECT_EQ(locks.get("Snapshots").at(0).getBool("EnforcedByStore"), false) << locks.dump();

	ASSERT_EQ(cli({"unlock-snapshot", "--snapshot-id", id}).status, 0);
	CliResult deleted = cli({"delete-snapshot", "--snapshot-id", id});
	EXPECT_EQ(deleted.status, 0) << deleted.err;
	EXPECT_EQ(cli({"describe-snapshots", "--snapshot-id", id}).status, 1);
}

// The Recycle Bin through virtsnapd: a snapshot deleted under a rule is no
// longer listed but is in the bin, comes back, and restores bit-exact
// against the disk it was taken of.
TEST_F(DaemonTest, ADeletedSnapshotComesBackFromTheRecycleBinWhole)
{
	std::string id = completedSnapshot();
	ASSERT_FALSE(HasFailure() || id.empty());
	CliResult rule = cli({"create-rule", "--resource-type", "EBS_SNAPSHOT", "--retention-period",
			      "RetentionPeriodValue=7,RetentionPeriodUnit=DAYS", "--description", "a week"});
	ASSERT_EQ(rule.status, 0) << rule.err;
	EXPECT_EQ(rule.json().getString("Identifier").value_or("").size(), 11u) << rule.out;

	CliResult deleted = cli({"delete-snapshot", "--snapshot-id", id});
	ASSERT_EQ(deleted.status, 0) << deleted.err;
	EXPECT_TRUE(deleted.json().has("RecycleBinExitTime")) << deleted.out;
	CliResult listed = cli({"describe-snapshots", "--snapshot-id", id});
	EXPECT_EQ(listed.status, 1);
	EXPECT_NE(listed.err.find("InvalidSnapshot.NotFound"), std::string::npos) << listed.err;
	Json bin = cli({"list-snapshots-in-recycle-bin"}).json().get("Snapshots");
	ASSERT_EQ(bin.size(), 1u) << bin.dump();
	EXPECT_EQ(bin.at(0).getString("SnapshotId"), id);

	CliResult back = cli({"restore-snapshot-from-recycle-bin", "--snapshot-id", id});
	ASSERT_EQ(back.status, 0) << back.err;
	EXPECT_EQ(describe(id).getString("State"), "completed");
	EXPECT_EQ(cli({"list-snapshots-in-recycle-bin"}).json().get("Snapshots").size(), 0u);
	std::string volume = tmp_.file("back.qcow2");
	CliResult restored = cli({"create-volume", "--snapshot-id", id, "--target", volume});
	ASSERT_EQ(restored.status, 0) << restored.err;
	std::string out;
	EXPECT_EQ(runCommand({"qemu-img", "compare", "-U", tmp_.file("disk0.qcow2"), volume}, &out), 0) << out;
}

// A restore-instance killed after its commit point (its journal written,
// not every image renamed yet) is finished by the daemon before it serves.
TEST_F(DaemonTest, ARestoreKilledAfterItsCommitPointIsFinishedWhenTheDaemonStarts)
{
	// The journal as restore-instance writes it (engine/restore_journal.h),
	// in the state directory: a local store's own.
	Json swaps = Json::array();
	for (const char *disk : {"vda", "vdb"}) {
		std::string image = tmp_.file(std::string(disk) + ".qcow2");
		std::ofstream(image) << "old " << disk;
		std::ofstream(image + ".tmp-restored") << "restored " << disk;
		Json swap = Json::object();
		swap.set("Restored", Json::string(image + ".tmp-restored"));
		swap.set("Image", Json::string(image));
		swaps.append(swap);
	}
	// The kill came after the first rename.
	fs::rename(tmp_.file("vda.qcow2.tmp-restored"), tmp_.file("vda.qcow2"));
	Json doc = Json::object();
	doc.set("SnapshotSetId", Json::string("ss-0123456789abcdef0"));
	doc.set("Swaps", swaps);
	fs::create_directories(storeDir_ + "/restore-journals");
	std::string journal = storeDir_ + "/restore-journals/ss-0123456789abcdef0.restore-journal";
	std::ofstream(journal) << doc.dump();

	ASSERT_TRUE(daemon_.start());
	EXPECT_EQ(readFile(tmp_.file("vda.qcow2")), "restored vda");
	EXPECT_EQ(readFile(tmp_.file("vdb.qcow2")), "restored vdb");
	EXPECT_FALSE(fs::exists(tmp_.file("vdb.qcow2.tmp-restored")));
	EXPECT_FALSE(fs::exists(journal));
	EXPECT_NE(readFile(daemon_.options().logFile).find("finished the interrupted restore-instance of ss-0123456789abcdef0"),
		  std::string::npos)
		<< readFile(daemon_.options().logFile);
}

TEST_F(DaemonTest, KilledMidTransferTheRestartedDaemonEndsTheJobAndCleansUp)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(768, 1024));
	QemuResidue clean = residue();
	for (int delayMs : {200, 900, 1800}) {
		ASSERT_TRUE(daemon_.start());
		std::set<std::string> bitmapsBefore = bitmaps();
		CliResult r = create();
		ASSERT_EQ(r.status, 0) << r.err;
		std::string id = r.json().getString("SnapshotId").value_or("");
		std::this_thread::sleep_for(std::chrono::milliseconds(delayMs));
		daemon_.stop(SIGKILL);

		ASSERT_TRUE(daemon_.start());
		Json snap = describe(id);
		if (snap.getString("State") == "completed")
			continue; // it finished before the kill
		EXPECT_EQ(snap.getString("State"), "error") << delayMs << " ms";
		EXPECT_NE(snap.getString("StateMessage").value_or("").find("interrupted"), std::string::npos);
		// Nothing of the capture stays, its bitmap included.
		QemuResidue expected = clean;
		expected.bitmaps.assign(bitmapsBefore.begin(), bitmapsBefore.end());
		EXPECT_EQ(residue(), expected) << "after a kill at " << delayMs << " ms";
		EXPECT_EQ(bitmaps(), bitmapsBefore) << "the half-made bitmap stayed";
		CliResult verified = cli({"verify"});
		EXPECT_EQ(verified.status, 0) << verified.err;
		daemon_.stop();
	}
	for (auto &e : fs::directory_iterator(workRoot()))
		ADD_FAILURE() << "left behind: " << e.path();
}

TEST_F(DaemonTest, DeleteAndGcNeverBreakAnotherSnapshotAndTheCatalogRebuilds)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(96, 128));
	ASSERT_TRUE(daemon_.start());
	std::vector<std::string> ids;
	for (int i = 0; i < 3; i++) {
		if (i > 0) {
			ASSERT_TRUE(vm_->qemuIo("vda", "write -P 0x" + std::to_string(40 + i) + " " +
							   std::to_string(i * 16) + "M 4M"));
		}
		CliResult r = create({"--wait"});
		ASSERT_EQ(r.status, 0) << r.err;
		ids.push_back(r.json().getString("SnapshotId").value_or(""));
	}
	// References made before anything is deleted, by the code under test
	// but compared after gc with qemu-img, independently.
	std::vector<std::string> before;
	for (const std::string &id : ids) {
		before.push_back(tmp_.file(id + ".before.raw"));
		ASSERT_EQ(cli({"create-volume", "--snapshot-id", id, "--target", before.back(), "--format", "raw"}).status, 0);
	}
	ASSERT_EQ(cli({"delete-snapshot", "--snapshot-id", ids[0]}).status, 0);
	ASSERT_EQ(cli({"delete-snapshot", "--snapshot-id", ids[2]}).status, 0);
	CliResult gc = cli({"gc", "--grace-seconds", "0"});
	ASSERT_EQ(gc.status, 0) << gc.err;
	EXPECT_GT(gc.json().getInt("BytesFreed").value_or(0), 0) << gc.out;
	std::string after = tmp_.file("after.raw");
	ASSERT_EQ(cli({"create-volume", "--snapshot-id", ids[1], "--target", after, "--format", "raw"}).status, 0);
	std::string out;
	EXPECT_EQ(runCommand({"qemu-img", "compare", "-f", "raw", "-F", "raw", after, before[1]}, &out), 0) << out;
	EXPECT_EQ(cli({"verify"}).status, 0);

	// The catalog is an index: rebuilt from the manifests, and rebuilt by
	// itself when it is gone.
	CliResult rebuilt = cli({"catalog", "rebuild"});
	ASSERT_EQ(rebuilt.status, 0) << rebuilt.err;
	EXPECT_EQ(rebuilt.json().getInt("Snapshots"), 1);
	daemon_.stop();
	for (const char *f : {"catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"})
		fs::remove(storeDir_ + "/" + f);
	CliResult listed = cli({"describe-snapshots"});
	ASSERT_EQ(listed.status, 0) << listed.err;
	ASSERT_EQ(listed.json().get("Snapshots").size(), 1u);
	EXPECT_EQ(listed.json().get("Snapshots").at(0).getString("SnapshotId"), ids[1]);

	// Damage is loud: verify names the snapshot and fails.
	for (auto &e : fs::recursive_directory_iterator(storeDir_ + "/packs"))
		if (e.path().extension() == ".pack") {
			std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
			f.seekp(std::streamoff(fs::file_size(e.path()) / 2));
			f.put('\x5a');
		}
	CliResult damaged = cli({"verify"});
	EXPECT_EQ(damaged.status, 1);
	EXPECT_NE(damaged.err.find(ids[1]), std::string::npos) << damaged.err;
}

TEST_F(DaemonTest, WithoutADaemonACreateNeedsWaitAndSaysHowToStartOne)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(8, 16));
	CliResult r = create();
	EXPECT_EQ(r.status, 1);
	EXPECT_NE(r.err.find("virtsnapd"), std::string::npos) << r.err;
	EXPECT_NE(r.err.find("--wait"), std::string::npos) << r.err;
	EXPECT_TRUE(bitmaps().empty());
	CliResult waited = create({"--wait"});
	EXPECT_EQ(waited.status, 0) << waited.err;
	EXPECT_EQ(waited.json().getString("State"), "completed");
}

TEST_F(DaemonTest, AKilledInProcessRunIsRecoveredByTheNextOne)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(512, 768));
	QemuResidue clean = residue();
	std::vector<std::string> args{"--store", storeDir_, "--key-file", keyFile_, "--socket", socket_,
				      "create-snapshot", "--qmp-socket", vm_->qmpSocket(), "--disk", "vda", "--wait"};
	int recovered = 0;
	size_t interrupted = 0;
	for (int ms : {150, 300, 450}) {
		std::set<std::string> before = bitmaps();
		CliResult killed = runVirtsnap(args, {"TMPDIR=" + workRoot()}, SIGKILL, ms);
		if (killed.status == 0)
			continue; // done before the kill
		// A kill before the catalog row was written leaves none: count
		// the pending rows the killed run left, which the next must fail.
		CliResult left = cli({"describe-snapshots", "--filter", "Name=status,Values=pending"});
		ASSERT_EQ(left.status, 0) << left.err;
		interrupted += left.json().get("Snapshots").size();
		// No handler runs on SIGKILL: QEMU keeps what the capture made
		// until the next run finds the job and removes it.
		CliResult next = create({"--wait"});
		ASSERT_EQ(next.status, 0) << next.err;
		recovered++;
		// Nothing of the killed run stays; the next one's bitmap does.
		QemuResidue expected = clean;
		expected.bitmaps = {next.json().getString("SnapshotId").value_or("")};
		EXPECT_EQ(residue(), expected) << "after a kill at " << ms << " ms";
		std::set<std::string> after = bitmaps();
		EXPECT_EQ(after.size(), 1u) << "bitmaps before: " << before.size();
		EXPECT_TRUE(after.count(next.json().getString("SnapshotId").value_or("")));
		CliResult listed = cli({"describe-snapshots", "--filter", "Name=status,Values=error"});
		EXPECT_EQ(listed.json().get("Snapshots").size(), interrupted) << listed.out;
		CliResult stuck = cli({"describe-snapshots", "--filter", "Name=status,Values=pending"});
		EXPECT_EQ(stuck.json().get("Snapshots").size(), 0u) << stuck.out;
	}
	EXPECT_GT(recovered, 0) << "every run finished before its kill: the test proved nothing";
	EXPECT_EQ(cli({"verify"}).status, 0);
}

// Every process on the machine, and the daemon's descendants' environments,
// as text: what a local user (or a helper's environment) could see.
std::string everythingVisibleNow(pid_t daemon)
{
	std::string seen;
	for (const auto &entry : fs::directory_iterator("/proc")) {
		std::string pid = entry.path().filename();
		if (pid.find_first_not_of("0123456789") != std::string::npos)
			continue;
		seen += readFile(entry.path() / "cmdline") + "\n";
		// Descendants of the daemon: its parent chain reaches it.
		for (std::string p = pid; !p.empty() && p != "0" && p != "1";) {
			if (p == std::to_string(daemon)) {
				seen += readFile(entry.path() / "environ") + "\n";
				break;
			}
			std::string stat = readFile("/proc/" + p + "/stat");
			size_t close = stat.rfind(')');
			if (close == std::string::npos)
				break;
			std::istringstream rest(stat.substr(close + 2));
			std::string state;
			rest >> state >> p;
		}
	}
	return seen;
}

TEST_F(DaemonTest, TheKeyAppearsInNoArgvEnvironmentLogOrEvent)
{
	ASSERT_NO_FATAL_FAILURE(startQemu(64, 128));
	std::string helperEnv = tmp_.file("helper-env");
	{
		std::ofstream h(eventsDir_ + "/10-env");
		h << "#!/bin/sh\ncat /proc/$$/environ /proc/$$/cmdline > " << helperEnv << ".$$\n";
	}
	fs::permissions(eventsDir_ + "/10-env", fs::perms::owner_all);
	ASSERT_TRUE(daemon_.start());
	struct stat st;
	ASSERT_EQ(::stat(keyFile_.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u) << "the key file init wrote";

	std::atomic<bool> done{false};
	std::string sampled;
	std::thread sampler([&] {
		while (!done) {
			sampled += everythingVisibleNow(daemon_.pid());
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
		}
	});
	CliResult one = create({"--wait"});
	CliResult two = create({"--wait", "--tag", "k=v"});
	done = true;
	sampler.join();
	ASSERT_EQ(one.status, 0) << one.err;
	ASSERT_EQ(two.status, 0) << two.err;
	std::this_thread::sleep_for(std::chrono::seconds(1)); // the handlers' turn
	std::string handlers;
	for (auto &e : fs::directory_iterator(tmp_.path()))
		if (e.path().filename().string().rfind("helper-env.", 0) == 0)
			handlers += readFile(e.path());
	EXPECT_FALSE(handlers.empty()) << "no handler ran: the test saw no helper's environment";

	std::string key = readFile(keyFile_);
	ASSERT_EQ(key.rfind("virtsnap-key-v1 ", 0), 0u);
	std::string hex = key.substr(16, 64), upper = hex, raw;
	for (char &c : upper)
		c = char(std::toupper(static_cast<unsigned char>(c)));
	for (size_t i = 0; i < hex.size(); i += 2)
		raw += char(std::stoi(hex.substr(i, 2), nullptr, 16));
	std::map<std::string, std::string> places{{"argv or a helper's environment", sampled},
						  {"an events handler's environment", handlers},
						  {"the daemon's log", readFile(daemon_.options().logFile)},
						  {"the events log", readFile(eventsLog_)},
						  {"the CLI's output", one.out + one.err + two.out + two.err}};
	for (const auto &[place, text] : places)
		for (const std::string &secret : {hex.substr(0, 16), hex.substr(48), upper.substr(0, 16), raw})
			EXPECT_EQ(text.find(secret), std::string::npos) << "key material in " << place;
	EXPECT_GT(sampled.size(), 0u);
}

// A member of the virtsnap group has the root daemon write a block only
// where the member may write, and owns what it gets; it may not have the
// daemon write a set into a directory of its choosing.
TEST_F(DaemonTest, AGroupMemberHasFilesWrittenOnlyWhereItMayWrite)
{
	REQUIRE_TOOL("useradd");
	REQUIRE_TOOL("groupadd");
	REQUIRE_TOOL("setpriv");
	if (getuid() != 0)
		GTEST_SKIP() << "needs root to create a user";
	HostUsersLock usersLock;
	std::string out;
	bool madeGroup = !getgrnam("virtsnap");
	if (madeGroup) {
		ASSERT_EQ(runCommand({"groupadd", "--system", "virtsnap"}, &out), 0) << out;
	}
	std::string user = "vsmember" + std::to_string(getpid() % 100000);
	ASSERT_EQ(runCommand({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-g",
			      "virtsnap", user},
			     &out),
		  0)
		<< out;
	struct Cleanup {
		std::string user;
		bool group;
		~Cleanup()
		{
			runCommand({"userdel", user});
			if (group)
				runCommand({"groupdel", "virtsnap"});
		}
	} cleanup{user, madeGroup};
	// The daemon gives its socket to the group when it starts.
	std::string id = completedSnapshot();
	ASSERT_FALSE(HasFailure() || id.empty());
	Json block = cli({"list-snapshot-blocks", "--snapshot-id", id}).json().get("Blocks").at(0);
	std::string index = std::to_string(block.getInt("BlockIndex").value_or(-1));
	std::string token = block.getString("BlockToken").value_or("");
	ASSERT_FALSE(token.empty());
	struct passwd *pw = getpwnam(user.c_str());
	ASSERT_TRUE(pw);
	const uid_t uid = pw->pw_uid;
	const std::string uidText = std::to_string(uid), gidText = std::to_string(pw->pw_gid);
	fs::permissions(tmp_.path(), fs::perms::others_exec, fs::perm_options::add);
	std::string mine = tmp_.file("mine");
	fs::create_directories(mine);
	ASSERT_EQ(::chown(mine.c_str(), uid, pw->pw_gid), 0);
	auto asMember = [&](std::vector<std::string> args) {
		std::vector<std::string> argv{"setpriv", "--reuid", uidText, "--regid", gidText, "--clear-groups",
					      std::getenv("VIRTSNAP_BIN"), "--socket", socket_, "--store", storeDir_};
		argv.insert(argv.end(), args.begin(), args.end());
		return runCommand(argv, &out);
	};
	std::vector<std::string> get{"get-snapshot-block", "--snapshot-id", id, "--block-index", index,
				     "--block-token", token, "--output-file"};

	std::string forbidden = "/etc/vs-block-" + std::to_string(getpid());
	get.push_back(forbidden);
	EXPECT_EQ(asMember(get), 1) << out;
	EXPECT_NE(out.find("AccessDenied: --output-file " + forbidden), std::string::npos) << out;
	EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
	EXPECT_FALSE(fs::exists(forbidden));
	fs::remove(forbidden);

	get.back() = mine + "/block.bin";
	ASSERT_EQ(asMember(get), 0) << out;
	struct stat st {};
	ASSERT_EQ(::stat((mine + "/block.bin").c_str(), &st), 0);
	EXPECT_EQ(st.st_uid, uid);
	EXPECT_EQ(st.st_size, 512 * 1024);

	// create-volume --target by the same rule; qemu-img, which the daemon
	// runs as root, is handed the files it holds, never their names.
	std::string forbiddenVolume = "/etc/vs-volume-" + std::to_string(getpid()) + ".qcow2";
	EXPECT_EQ(asMember({"create-volume", "--snapshot-id", id, "--target", forbiddenVolume}), 1) << out;
	EXPECT_NE(out.find("AccessDenied: no permission to create " + forbiddenVolume), std::string::npos) << out;
	EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
	for (const auto &e : fs::directory_iterator("/etc"))
		EXPECT_EQ(e.path().string().find("/etc/vs-volume-"), std::string::npos) << e.path();
	std::string volume = mine + "/volume.qcow2";
	ASSERT_EQ(asMember({"create-volume", "--snapshot-id", id, "--target", volume}), 0) << out;
	ASSERT_EQ(::stat(volume.c_str(), &st), 0);
	EXPECT_EQ(st.st_uid, uid);
	EXPECT_EQ(runCommand({"qemu-img", "compare", "-U", tmp_.file("disk0.qcow2"), volume}, &out), 0) << out;

	// Recycle Bin rules are their account's: the member manages its
	// account's, which root (the same, default account) sees too.
	ASSERT_EQ(asMember({"create-rule", "--retention-period", "RetentionPeriodValue=1,RetentionPeriodUnit=DAYS"}), 0)
		<< out;
	const std::string rule = Json::parse(out).value_or(Json()).getString("Identifier").value_or("");
	ASSERT_FALSE(rule.empty()) << out;
	CliResult seenByRoot = cli({"get-rule", "--identifier", rule}, socket_);
	EXPECT_EQ(seenByRoot.status, 0) << seenByRoot.err;
	EXPECT_EQ(asMember({"delete-rule", "--identifier", rule}), 0) << out;
	// Locks are root's: a member can neither set nor remove one.
	for (const char *command : {"lock-snapshot", "unlock-snapshot"}) {
		std::vector<std::string> args{command, "--snapshot-id", id};
		if (std::string(command) == "lock-snapshot")
			args.insert(args.end(), {"--lock-mode", "governance", "--lock-duration", "1"});
		EXPECT_EQ(asMember(args), 1) << out;
		EXPECT_NE(out.find(std::string("AccessDenied: ") + command + " through virtsnapd is for root"),
			  std::string::npos)
			<< out;
	}
	// put-snapshot-block and import-image read the caller's files as the
	// caller: a root-only file is not the member's to snapshot.
	std::string rootOnly = tmp_.file("root-only.bin");
	{
		std::ofstream(rootOnly) << std::string(512 * 1024, 'x');
	}
	fs::permissions(rootOnly, fs::perms::owner_read | fs::perms::owner_write);
	ASSERT_EQ(asMember({"start-snapshot", "--volume-size", "1"}), 0) << out;
	std::string own = Json::parse(out).value_or(Json()).getString("SnapshotId").value_or("");
	ASSERT_FALSE(own.empty()) << out;
	auto putAsMember = [&](const std::string &snapshot, const std::string &file) {
		return asMember({"put-snapshot-block", "--snapshot-id", snapshot, "--block-index", "0", "--block-data",
				 file, "--data-length", "524288", "--checksum",
				 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="});
	};
	EXPECT_EQ(putAsMember(own, rootOnly), 1) << out;
	EXPECT_NE(out.find("AccessDenied: --block-data " + rootOnly), std::string::npos) << out;
	EXPECT_EQ(asMember({"import-image", "--file", rootOnly}), 1) << out;
	EXPECT_NE(out.find("AccessDenied: --file " + rootOnly), std::string::npos) << out;
	EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
	// Nor is another user's pending snapshot the member's to write into.
	std::string roots = cli({"start-snapshot", "--volume-size", "1"}).json().getString("SnapshotId").value_or("");
	ASSERT_FALSE(roots.empty());
	std::string memberBlock = mine + "/block.bin"; // written above, the member's
	EXPECT_EQ(putAsMember(roots, memberBlock), 1) << out;
	EXPECT_NE(out.find("AccessDenied: snapshot " + roots + " was started by uid 0"), std::string::npos) << out;
	EXPECT_EQ(asMember({"complete-snapshot", "--snapshot-id", roots, "--changed-blocks-count", "0"}), 1) << out;
	EXPECT_NE(out.find("AccessDenied"), std::string::npos) << out;
	// A qcow2 is read by qemu-nbd, which would open what its header names
	// as root: through the daemon only root's are imported.
	std::string qcow = mine + "/image.qcow2";
	ASSERT_EQ(runCommand({"qemu-img", "create", "-q", "-f", "qcow2", qcow, "1M"}, &out), 0) << out;
	ASSERT_EQ(::chown(qcow.c_str(), uid, pw->pw_gid), 0);
	EXPECT_EQ(asMember({"import-image", "--file", qcow}), 1) << out;
	EXPECT_NE(out.find("AccessDenied: import-image of a qcow2 through virtsnapd is for root"), std::string::npos)
		<< out;

	EXPECT_EQ(asMember({"restore-instance", "--snapshot-set-id", "ss-0123456789abcdef0", "--qmp-socket",
			    vm_->qmpSocket(), "--target-dir", mine}),
		  1)
		<< out;
	EXPECT_NE(out.find("AccessDenied: restore-instance --target-dir"), std::string::npos) << out;
	EXPECT_EQ(std::distance(fs::directory_iterator(mine), fs::directory_iterator()), 3) << "restore wrote into " << mine;
}

TEST_F(DaemonTest, TheSocketRefusesUsersOutsideTheGroup)
{
	REQUIRE_TOOL("useradd");
	REQUIRE_TOOL("setpriv");
	if (getuid() != 0)
		GTEST_SKIP() << "needs root to create a user";
	ASSERT_TRUE(daemon_.start());
	HostUsersLock usersLock;
	std::string user = "vstest" + std::to_string(getpid() % 100000);
	std::string out;
	ASSERT_EQ(runCommand({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user}, &out),
		  0)
		<< out;
	struct passwd *pw = getpwnam(user.c_str());
	ASSERT_TRUE(pw);
	std::string uid = std::to_string(pw->pw_uid), gid = std::to_string(pw->pw_gid);
	// The socket's directory must be reachable for the test to mean
	// anything: only the socket's own mode and the peer check stop them.
	fs::permissions(tmp_.path(), fs::perms::others_exec, fs::perm_options::add);
	int rc = runCommand({"setpriv", "--reuid", uid, "--regid", gid, "--clear-groups", std::getenv("VIRTSNAP_BIN"),
			     "--socket", socket_, "--store", storeDir_, "describe-snapshots"},
			    &out);
	runCommand({"userdel", user});
	EXPECT_EQ(rc, 1) << out;
	EXPECT_NE(out.find("AccessDenied"), std::string::npos) << out;
	struct stat st;
	ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0660u);
}

} // namespace
} // namespace virtsnap::test
