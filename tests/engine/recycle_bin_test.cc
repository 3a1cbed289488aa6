// The Recycle Bin (engine/recycle_bin.h) on a store in a directory whose
// clock the test moves: deletion into the bin and back, bit-exact; gc
// keeping a binned snapshot's chunks during its retention and removing
// them after; which rule applies; what a locked rule refuses; whose rule
// it is.
#include <algorithm>
#include <fstream>
#include <iterator>

#include "engine/accounts.h"
#include "engine/recycle_bin.h"
#include "engine/restore.h"
#include "tests/engine/clocked_store.h"

namespace virtsnap::engine {
namespace {

using namespace std::chrono_literals;
using store::test::describe;

class RecycleBinTest : public ClockedStoreTest
{
protected:
	RetentionRule rule(int64_t days, store::Tags tags = {}, const std::string &ownerId = "")
	{
		RetentionRule r;
		r.ownerId = ownerId;
		r.retentionDays = days;
		r.resourceTags = std::move(tags);
		auto made = createRule(*store_, r);
		EXPECT_TRUE(made) << describe(made);
		return made ? *made : RetentionRule{};
	}

	Bytes restored(const std::string &id)
	{
		fs::path target = root_ / (id + ".raw");
		auto r = createVolume(*store_, {id, target, "raw", {}, ""});
		EXPECT_TRUE(r) << describe(r);
		std::ifstream in(target, std::ios::binary);
		return Bytes(std::istreambuf_iterator<char>(in), {});
	}
};

TEST_F(RecycleBinTest, ADeletedSnapshotWaitsInTheBinAndComesBackWhole)
{
	rule(7);
	auto deleted = deleteSnapshot(*store_, id_);
	ASSERT_TRUE(deleted) << describe(deleted);
	ASSERT_TRUE(deleted->recycleBinExitTime);
	EXPECT_EQ(store_->getManifest(id_).error().code, errc::kSnapshotNotFound);
	auto bin = listRecycleBin(*store_, {});
	ASSERT_TRUE(bin) << describe(bin);
	ASSERT_EQ(bin->size(), 1u);
	EXPECT_EQ((*bin)[0].exitTime - (*bin)[0].enterTime, 7 * 86400);

	store::GcReport kept = gc();
	EXPECT_EQ(kept.snapshotsHeld, 1u);
	EXPECT_EQ(kept.packsRemoved, 0u);

	advance(6 * 24h);
	auto back = restoreFromRecycleBin(*store_, id_);
	ASSERT_TRUE(back) << describe(back);
	EXPECT_TRUE(listRecycleBin(*store_, {})->empty());
	EXPECT_EQ(restored(id_), disk(1));
}

TEST_F(RecycleBinTest, AfterItsRetentionASnapshotIsGoneForGood)
{
	rule(1);
	ASSERT_TRUE(deleteSnapshot(*store_, id_));
	advance(25h);
	EXPECT_TRUE(listRecycleBin(*store_, {})->empty());
	auto late = restoreFromRecycleBin(*store_, id_);
	ASSERT_FALSE(late);
	EXPECT_EQ(late.error().code, errc::kSnapshotNotFound) << describe(late);

	store::GcReport freed = gc();
	EXPECT_EQ(freed.recycledSnapshotsRemoved, 1u);
	EXPECT_EQ(freed.snapshotsHeld, 0u);
	EXPECT_GT(freed.packsRemoved, 0u);
}

TEST_F(RecycleBinTest, TheLongestRetentionOfTheRulesThatMatchApplies)
{
	rule(3, {{"env", "prod"}});
	rule(10, {{"team", ""}});
	const std::string dev = "snap-0000000000000000d", both = "snap-0000000000000000b";
	ASSERT_NO_FATAL_FAILURE(save(dev, {{"env", "dev"}}, 2));
	ASSERT_NO_FATAL_FAILURE(save(both, {{"env", "prod"}, {"team", "db"}}, 3));

	auto gone = deleteSnapshot(*store_, dev);
	ASSERT_TRUE(gone) << describe(gone);
	EXPECT_FALSE(gone->recycleBinExitTime) << "no rule matches env=dev";
	auto binned = deleteSnapshot(*store_, both);
	ASSERT_TRUE(binned) << describe(binned);
	auto bin = listRecycleBin(*store_, {both});
	ASSERT_EQ(bin->size(), 1u);
	EXPECT_EQ((*bin)[0].exitTime - (*bin)[0].enterTime, 10 * 86400);
	EXPECT_TRUE(listRecycleBin(*store_, {dev})->empty());
}

TEST(RecycleBinRules, TheLongestMatchingRuleWinsInEitherOrder)
{
	RetentionRule all, prod, team;
	all.retentionDays = 5;
	prod.retentionDays = 3;
	prod.resourceTags = {{"env", "prod"}};
	team.retentionDays = 10;
	team.resourceTags = {{"team", ""}};
	store::Tags tags = {{"env", "prod"}, {"team", "db"}};
	std::vector<RetentionRule> rules = {prod, team, all};
	for (int order = 0; order < 3; order++) {
		std::rotate(rules.begin(), rules.begin() + 1, rules.end());
		ASSERT_TRUE(ruleFor(rules, tags));
		EXPECT_EQ(ruleFor(rules, tags)->retentionDays, 10);
		EXPECT_EQ(ruleFor(rules, {{"env", "prod"}})->retentionDays, 5);
	}
	EXPECT_FALSE(ruleFor({prod, team}, {{"env", "dev"}}));
	EXPECT_EQ(ruleFor({prod, team}, {{"env", "dev"}, {"team", "x"}})->retentionDays, 10);
}

TEST_F(RecycleBinTest, ALockedRuleRefusesDeletionAndWeakeningUntilItsUnlockDelayHasPassed)
{
	RetentionRule r = rule(7);
	int64_t now = 0;
	ASSERT_TRUE(lockRule(*store_, "", r.identifier, 7, now));
	auto refuse = [&](const auto &attempt) {
		ASSERT_FALSE(attempt);
		EXPECT_EQ(attempt.error().code, errc::kRuleLocked) << describe(attempt);
	};
	refuse(deleteRule(*store_, "", r.identifier));
	refuse(updateRule(*store_, "", r.identifier, {std::nullopt, 3, std::nullopt}, now));
	refuse(updateRule(*store_, "", r.identifier, {std::nullopt, std::nullopt, store::Tags{{"k", "v"}}}, now));
	auto longer = updateRule(*store_, "", r.identifier, {std::string("kept longer"), 30, std::nullopt}, now);
	ASSERT_TRUE(longer) << describe(longer);
	EXPECT_EQ(longer->retentionDays, 30);

	auto unlocking = unlockRule(*store_, "", r.identifier, now);
	ASSERT_TRUE(unlocking) << describe(unlocking);
	EXPECT_EQ(unlocking->lockState(now), "pending_unlock");
	refuse(deleteRule(*store_, "", r.identifier));
	advance(8 * 24h);
	auto deleted = deleteRule(*store_, "", r.identifier);
	EXPECT_TRUE(deleted) << describe(deleted);
}

TEST_F(RecycleBinTest, BadRequestsChangeNothing)
{
	for (int64_t days : {0, 366}) {
		RetentionRule r;
		r.retentionDays = days;
		auto made = createRule(*store_, r);
		ASSERT_FALSE(made);
		EXPECT_EQ(made.error().code, errc::kInvalidParameterValue) << describe(made);
	}
	int64_t now = 0;
	auto unknown = getRule(*store_, "", "nosuchrule00", now);
	ASSERT_FALSE(unknown);
	EXPECT_EQ(unknown.error().code, errc::kResourceNotFound) << describe(unknown);
	RetentionRule tagged = rule(7, {{"env", "prod"}});
	for (int64_t delay : {6, 31, 7}) {
		auto locked = lockRule(*store_, "", tagged.identifier, delay, now);
		ASSERT_FALSE(locked);
		EXPECT_EQ(locked.error().code, errc::kInvalidParameterValue) << describe(locked);
	}
	auto rules = listRules(*store_, "", now);
	ASSERT_EQ(rules->size(), 1u);
	EXPECT_EQ((*rules)[0].lockState(now), "unlocked");
}

TEST_F(RecycleBinTest, ARuleIsItsAccountsAlone)
{
	const std::string a = "111111111111", b = "222222222222";
	RetentionRule ofA = rule(7, {}, a);
	int64_t now = 0;
	ASSERT_TRUE(lockRule(*store_, a, ofA.identifier, 7, now));

	// To b, a's rule does not exist: b can neither see it nor touch it.
	auto notFound = [&](const auto &attempt, const char *what) {
		ASSERT_FALSE(attempt) << what;
		EXPECT_EQ(attempt.error().code, errc::kResourceNotFound) << what << ": " << describe(attempt);
	};
	EXPECT_TRUE(listRules(*store_, b, now)->empty());
	notFound(getRule(*store_, b, ofA.identifier, now), "get");
	notFound(updateRule(*store_, b, ofA.identifier, {std::string("mine now"), 30, std::nullopt}, now), "update");
	notFound(unlockRule(*store_, b, ofA.identifier, now), "unlock");
	notFound(lockRule(*store_, b, ofA.identifier, 30, now), "lock");
	notFound(deleteRule(*store_, b, ofA.identifier), "delete");
	auto still = getRule(*store_, a, ofA.identifier, now);
	ASSERT_TRUE(still) << describe(still);
	EXPECT_EQ(still->description, "");
	EXPECT_EQ(still->retentionDays, 7);
	EXPECT_EQ(still->lockState(now), "locked");
	ASSERT_EQ(listRules(*store_, a, now)->size(), 1u);

	// a's rule keeps a's deleted snapshots, not b's.
	const std::string snapA = "snap-000000000000000a1", snapB = "snap-000000000000000b1";
	ASSERT_NO_FATAL_FAILURE(save(snapA, {}, 2, a));
	ASSERT_NO_FATAL_FAILURE(save(snapB, {}, 3, b));
	auto goneB = deleteSnapshot(*store_, snapB);
	ASSERT_TRUE(goneB) << describe(goneB);
	EXPECT_FALSE(goneB->recycleBinExitTime) << "b has no rule";
	auto binnedA = deleteSnapshot(*store_, snapA);
	ASSERT_TRUE(binnedA) << describe(binnedA);
	EXPECT_TRUE(binnedA->recycleBinExitTime);
	auto bin = listRecycleBin(*store_, {});
	ASSERT_EQ(bin->size(), 1u);
	EXPECT_EQ((*bin)[0].manifest.snapshotId, snapA);
	EXPECT_EQ(gc().snapshotsHeld, 1u) << "b's chunks are not held";
}

TEST_F(RecycleBinTest, ARuleFromBeforeAccountsIsTheDefaultAccountsAndStillKeepsEverySnapshot)
{
	auto def = ensureDefaultAccount(*store_, keyFile());
	ASSERT_TRUE(def) << describe(def);
	RetentionRule old = rule(7); // names no account, as rules before accounts
	const std::string other = "333333333333";
	int64_t now = 0;
	ASSERT_EQ(listRules(*store_, *def, now)->size(), 1u);
	EXPECT_TRUE(getRule(*store_, *def, old.identifier, now));
	EXPECT_TRUE(listRules(*store_, other, now)->empty());
	// It is managed by the default account, but keeps every account's
	// snapshots, as it did before accounts: an upgrade must not weaken a
	// rule that may be locked.
	const std::string named = "snap-000000000000000d1", others = "snap-000000000000000c1";
	ASSERT_NO_FATAL_FAILURE(save(named, {}, 2, *def));
	ASSERT_NO_FATAL_FAILURE(save(others, {}, 3, other));
	for (const std::string &id : {id_, named, others})
		ASSERT_TRUE(deleteSnapshot(*store_, id)) << id;
	auto bin = listRecycleBin(*store_, {});
	ASSERT_TRUE(bin) << describe(bin);
	std::vector<std::string> ids;
	for (const BinEntry &e : *bin)
		ids.push_back(e.manifest.snapshotId);
	std::vector<std::string> expected{id_, named, others};
	std::sort(ids.begin(), ids.end());
	std::sort(expected.begin(), expected.end());
	EXPECT_EQ(ids, expected);
}

} // namespace
} // namespace virtsnap::engine
