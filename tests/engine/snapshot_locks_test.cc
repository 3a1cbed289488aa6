// Snapshot locks (engine/snapshot_locks.h) on a store in a directory whose
// clock the test moves: what each mode allows before and after its
// cool-off, that deletion is refused while a lock holds, and that gc keeps
// a locked snapshot's chunks even when its manifest was removed behind
// virtsnap's back, until the lock expires.
#include "engine/snapshot_locks.h"
#include "tests/engine/clocked_store.h"

namespace virtsnap::engine {
namespace {

using namespace std::chrono_literals;
using store::test::describe;

class SnapshotLocksTest : public ClockedStoreTest
{
protected:
	Result<SnapshotLock> lock(const std::string &mode, std::optional<int64_t> days,
				  std::optional<int64_t> coolOff = std::nullopt)
	{
		int64_t now = 0;
		return lockSnapshot(*store_, {id_, mode, days, std::nullopt, coolOff}, now);
	}

	std::string state()
	{
		int64_t now = 0;
		auto locks = describeLocks(*store_, {id_}, now);
		EXPECT_TRUE(locks) << describe(locks);
		return locks && locks->size() == 1 ? (*locks)[0].state(now) : "none";
	}
};

TEST_F(SnapshotLocksTest, ALockedSnapshotRefusesDeletionAndGcKeepsItsChunksUntilTheLockEnds)
{
	ASSERT_TRUE(lock("governance", 1));
	auto refused = deleteSnapshot(*store_, id_);
	ASSERT_FALSE(refused);
	EXPECT_EQ(refused.error().code, errc::kSnapshotLocked) << describe(refused);
	EXPECT_TRUE(store_->getManifest(id_)) << "the refused delete removed the manifest";

	// Behind virtsnap's back: the manifest goes, the lock keeps the data.
	ASSERT_TRUE(store_->deleteManifest(id_));
	store::GcReport kept = gc();
	EXPECT_EQ(kept.snapshotsHeld, 1u);
	EXPECT_EQ(kept.packsRemoved, 0u);
	EXPECT_GT(kept.chunksReferenced, 4u);

	advance(25h);
	EXPECT_EQ(state(), "expired");
	store::GcReport freed = gc();
	EXPECT_EQ(freed.snapshotsHeld, 0u);
	EXPECT_GT(freed.packsRemoved, 0u);
}

TEST_F(SnapshotLocksTest, GovernanceIsUnlockedAndTheSnapshotThenDeletes)
{
	auto l = lock("governance", 7);
	ASSERT_TRUE(l) << describe(l);
	EXPECT_EQ(l->expiresOn - l->createdOn, 7 * 86400);
	EXPECT_EQ(state(), "governance");
	// Governance: shortened or made compliance at will.
	ASSERT_TRUE(lock("governance", 2));
	ASSERT_TRUE(unlockSnapshot(*store_, id_));
	EXPECT_EQ(state(), "none");
	auto deleted = deleteSnapshot(*store_, id_);
	EXPECT_TRUE(deleted) << describe(deleted);
}

TEST_F(SnapshotLocksTest, ComplianceAfterItsCoolOffCanOnlyBeExtended)
{
	ASSERT_TRUE(lock("compliance", 10, 2));
	EXPECT_EQ(state(), "compliance-cooloff");
	advance(1h);
	// In the cool-off: shortened, and even unlocked, as EBS allows.
	ASSERT_TRUE(lock("compliance", 5));
	advance(2h);
	EXPECT_EQ(state(), "compliance");
	for (auto attempt : {unlockSnapshot(*store_, id_), lock("compliance", 4), lock("governance", 30),
			     lock("compliance", 30, 1)}) {
		ASSERT_FALSE(attempt);
		EXPECT_EQ(attempt.error().code, errc::kSnapshotLocked) << describe(attempt);
	}
	auto extended = lock("compliance", 20);
	ASSERT_TRUE(extended) << describe(extended);
	EXPECT_EQ(extended->expiresOn - extended->durationStartTime, 20 * 86400);
	EXPECT_EQ(deleteSnapshot(*store_, id_).error().code, errc::kSnapshotLocked);

	advance(std::chrono::hours(20 * 24));
	EXPECT_EQ(state(), "expired");
	auto deleted = deleteSnapshot(*store_, id_);
	EXPECT_TRUE(deleted) << describe(deleted);
	gc();
	EXPECT_EQ(state(), "none") << "gc left the expired lock";
}

// A cool-off set anew counts from when it began, not from when the lock
// was first made (as governance, long before).
TEST_F(SnapshotLocksTest, ACoolOffSetAnewCountsFromWhenItBegan)
{
	ASSERT_TRUE(lock("governance", 30));
	advance(10 * 24h);
	ASSERT_TRUE(lock("compliance", 30, 1));
	EXPECT_EQ(state(), "compliance-cooloff");
	auto longer = lock("compliance", 30, 72);
	ASSERT_TRUE(longer) << describe(longer);
	EXPECT_EQ(state(), "compliance-cooloff");
	advance(71h);
	EXPECT_EQ(state(), "compliance-cooloff");
	advance(2h);
	EXPECT_EQ(state(), "compliance");
}

// Another host locks the snapshot between the delete's check and its
// removal of the manifest: the lock wins, and the snapshot is back whole.
TEST_F(SnapshotLocksTest, ADeleteThatRacesALockPutsTheSnapshotBack)
{
	backend_->beforeRemove = [&](const std::string &name) {
		if (name.find(id_) != std::string::npos) {
			EXPECT_TRUE(lock("compliance", 1));
		}
	};
	auto deleted = deleteSnapshot(*store_, id_);
	ASSERT_FALSE(deleted);
	EXPECT_EQ(deleted.error().code, errc::kSnapshotLocked) << describe(deleted);
	auto m = store_->getManifest(id_);
	EXPECT_TRUE(m) << describe(m);
	EXPECT_EQ(state(), "compliance");
}

TEST_F(SnapshotLocksTest, BadRequestsChangeNothing)
{
	int64_t now = 0;
	auto past = std::chrono::system_clock::now() - 24h;
	std::vector<LockRequest> bad = {
		{id_, "forever", 1, std::nullopt, std::nullopt},
		{id_, "governance", std::nullopt, std::nullopt, std::nullopt},
		{id_, "governance", 1, std::chrono::system_clock::now() + 48h, std::nullopt},
		{id_, "governance", 1, std::nullopt, 3},
		{id_, "compliance", 1, std::nullopt, 73},
		{id_, "compliance", 0, std::nullopt, std::nullopt},
		{id_, "compliance", std::nullopt, past, std::nullopt},
	};
	for (const LockRequest &r : bad) {
		auto l = lockSnapshot(*store_, r, now);
		ASSERT_FALSE(l);
		EXPECT_EQ(l.error().code, errc::kInvalidParameterValue) << describe(l);
		EXPECT_EQ(l.error().message.find('\n'), std::string::npos);
	}
	auto missing = lockSnapshot(*store_, {"snap-00000000000000000", "governance", 1, {}, {}}, now);
	ASSERT_FALSE(missing);
	EXPECT_EQ(missing.error().code, errc::kSnapshotNotFound) << describe(missing);
	auto notLocked = unlockSnapshot(*store_, id_);
	ASSERT_FALSE(notLocked);
	EXPECT_EQ(notLocked.error().code, errc::kIncorrectState) << describe(notLocked);
	EXPECT_EQ(state(), "none");
}

} // namespace
} // namespace virtsnap::engine
