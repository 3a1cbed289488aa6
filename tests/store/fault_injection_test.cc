// The two fault layers the crash tests rely on, tested on their own:
// FaultBackend loses what the backend contract does not call durable and
// nothing else, and fails calls as asked; DurabilityModel keeps of a
// directory what its fsyncs made durable, and nothing else.
#include <fcntl.h>
#include <unistd.h>

#include <set>

#include "durability_model.h"
#include "fault_backend.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

class FaultBackendTest : public StoreDirTest
{
protected:
	void SetUp() override
	{
		StoreDirTest::SetUp();
		if (HasFatalFailure() || IsSkipped())
			return;
		injector_ = std::make_shared<FaultInjector>();
		fault_ = std::make_unique<FaultBackend>(std::make_unique<LocalBackend>(storeDir()), injector_);
	}

	// What the backend holds, seen from outside the process.
	std::set<std::string> listed()
	{
		LocalBackend outside(storeDir());
		std::set<std::string> names;
		EXPECT_TRUE(outside.list("", [&](const ObjectInfo &info) { names.insert(info.name); }));
		return names;
	}

	std::shared_ptr<FaultInjector> injector_;
	std::unique_ptr<FaultBackend> fault_;
};

TEST_F(FaultBackendTest, WithoutAFaultItIsTheBackendItWraps)
{
	ASSERT_TRUE(fault_->put("a", asBytes("one")));
	ASSERT_TRUE(fault_->create("b", asBytes("two")));
	EXPECT_EQ(codeOf(fault_->create("b", asBytes("again"))), errc::kObjectExists);
	auto w = fault_->openWriter("c");
	ASSERT_TRUE(w) << describe(w);
	ASSERT_TRUE((*w)->append(asBytes("thr")));
	ASSERT_TRUE((*w)->append(asBytes("ee")));
	EXPECT_EQ((*w)->size(), 5u);
	EXPECT_EQ(listed(), (std::set<std::string>{"a", "b"}));
	ASSERT_TRUE((*w)->commit());
	EXPECT_EQ(listed(), (std::set<std::string>{"a", "b", "c"}));
	auto c = fault_->get("c");
	ASSERT_TRUE(c) << describe(c);
	EXPECT_EQ(std::string(c->begin(), c->end()), "three");
	ASSERT_TRUE(fault_->remove("a"));
	EXPECT_EQ(codeOf(fault_->get("a")), errc::kObjectNotFound);
	EXPECT_EQ(fault_->describe(), storeDir().string());

	// put, create, the create refused, commit, remove.
	EXPECT_EQ(injector_->steps(), 5u);
	std::string log = injector_->describeCalls(kWritingCalls);
	EXPECT_NE(log.find("step 0 put a"), std::string::npos) << log;
	EXPECT_NE(log.find("append c"), std::string::npos) << log;
	EXPECT_NE(log.find("step 3 commit c"), std::string::npos) << log;
	EXPECT_NE(log.find("step 4 remove a"), std::string::npos) << log;
}

TEST_F(FaultBackendTest, ACrashBeforeLosesTheCallAndTheProcessWithIt)
{
	ASSERT_TRUE(fault_->put("kept", asBytes("x")));
	auto w = fault_->openWriter("uncommitted");
	ASSERT_TRUE(w);
	ASSERT_TRUE((*w)->append(asBytes("data")));
	injector_->arm({Fault::CrashBefore, 0});
	auto r = fault_->put("lost", asBytes("y"));
	EXPECT_EQ(codeOf(r), errc::kStoreUnavailable) << describe(r);
	EXPECT_TRUE(injector_->crashed());
	// Dead: nothing reaches the backend any more, reads included, and the
	// writer that was not committed is gone.
	EXPECT_FALSE(fault_->get("kept"));
	EXPECT_FALSE(fault_->put("later", asBytes("z")));
	EXPECT_FALSE((*w)->commit());
	EXPECT_EQ(listed(), std::set<std::string>{"kept"});
	EXPECT_EQ(filesContaining(storeDir(), ".tmp-").size(), 0u);
	auto hit = injector_->faulted();
	ASSERT_TRUE(hit);
	EXPECT_EQ(hit->call, Call::Put);
	EXPECT_EQ(hit->object, "lost");
	for (const CallRecord &c : injector_->calls())
		if (c.seq > hit->seq) {
			EXPECT_TRUE(c.refused) << c.describe();
		}
}

TEST_F(FaultBackendTest, ACrashAfterKeepsTheCallButNeverAnswers)
{
	auto other = fault_->openWriter("other");
	ASSERT_TRUE(other);
	ASSERT_TRUE((*other)->append(asBytes("not committed")));
	auto w = fault_->openWriter("committed");
	ASSERT_TRUE(w);
	ASSERT_TRUE((*w)->append(asBytes("data")));
	injector_->arm({Fault::CrashAfter, 0});
	EXPECT_EQ(codeOf((*w)->commit()), errc::kStoreUnavailable);
	EXPECT_FALSE((*other)->commit());
	EXPECT_EQ(listed(), std::set<std::string>{"committed"});
	LocalBackend outside(storeDir());
	auto back = outside.get("committed");
	ASSERT_TRUE(back);
	EXPECT_EQ(std::string(back->begin(), back->end()), "data");
}

TEST_F(FaultBackendTest, ErrorsFailOneCallAndTheProcessGoesOn)
{
	for (Fault f : {Fault::IoError, Fault::NoSpace}) {
		injector_->arm({f, 1});
		ASSERT_TRUE(fault_->put("first", asBytes("1")));
		auto r = fault_->put("second", asBytes("2"));
		ASSERT_FALSE(r);
		EXPECT_EQ(r.error().code, f == Fault::NoSpace ? errc::kNoSpace : errc::kIo);
		EXPECT_NE(r.error().message.find("fault injection: put second"), std::string::npos) << describe(r);
		EXPECT_FALSE(injector_->crashed());
		EXPECT_TRUE(fault_->put("third", asBytes("3")));
		EXPECT_EQ(listed(), (std::set<std::string>{"first", "third"}));
		ASSERT_TRUE(fault_->remove("first"));
		ASSERT_TRUE(fault_->remove("third"));
	}
}

TEST_F(FaultBackendTest, AppendsAreStepsOnlyWhereWritesAreCounted)
{
	injector_->arm({Fault::NoSpace, 2, kWritingCalls});
	auto w = fault_->openWriter("w"); // step 0
	ASSERT_TRUE(w);
	ASSERT_TRUE((*w)->append(asBytes("a"))); // 1
	auto r = (*w)->append(asBytes("b"));     // 2
	EXPECT_EQ(codeOf(r), errc::kNoSpace);
	EXPECT_EQ((*w)->size(), 1u);

	injector_->arm({Fault::NoSpace, 1, kDurableCalls});
	ASSERT_TRUE(fault_->put("x", asBytes("x"))); // 0
	ASSERT_TRUE((*w)->append(asBytes("c")));      // not a step
	EXPECT_EQ(codeOf((*w)->commit()), errc::kNoSpace);
}

// Writes `name` under `dir` as put() does, with the syncs asked for.
void writeThenRename(const fs::path &dir, const std::string &name, const std::string &data, bool syncFile, bool syncDir)
{
	fs::path tmp = dir / (name + ".tmp-0000000000000000");
	int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(writeAll(fd, asBytes(data)));
	if (syncFile) {
		ASSERT_EQ(::fsync(fd), 0);
	}
	::close(fd);
	ASSERT_EQ(::rename(tmp.c_str(), (dir / name).c_str()), 0);
	if (syncDir) {
		ASSERT_TRUE(fsyncDir(dir));
	}
}

std::string contentOf(const fs::path &path)
{
	auto data = readFile(path);
	return data ? std::string(data->begin(), data->end()) : "<absent>";
}

TEST_F(StoreDirTest, DurabilityModelKeepsWhatWasSyncedAndNothingElse)
{
	fs::path dir = storeDir();
	ASSERT_TRUE(makeDirs(dir / "sub"));
	ASSERT_TRUE(writeFileAtomic(dir / "old", asBytes("before")));
	DurabilityModel::start(dir);
	writeThenRename(dir, "whole", "synced", true, true);        // syncs 1, 2
	writeThenRename(dir, "unnamed", "synced", true, false);     // 3
	writeThenRename(dir / "sub", "empty", "unsynced", false, true); // 4
	ASSERT_EQ(::unlink((dir / "old").c_str()), 0);
	ASSERT_TRUE(makeDirs(dir / "new" / "deeper"));           // 5, 6
	ASSERT_TRUE(writeFileAtomic(dir / "new" / "deeper" / "f", asBytes("f"))); // 7, 8
	EXPECT_EQ(DurabilityModel::syncs(), 8u);
	DurabilityModel::stop();

	auto at = [&](size_t k) {
		fs::path out = root_ / ("lost-" + std::to_string(k));
		fs::remove_all(out);
		EXPECT_TRUE(DurabilityModel::materialize(k, out));
		return out;
	};
	fs::path before = at(0);
	EXPECT_EQ(contentOf(before / "old"), "before");
	EXPECT_FALSE(fs::exists(before / "whole"));
	EXPECT_TRUE(fs::is_empty(before / "sub"));
	// The file's bytes, then its name.
	EXPECT_FALSE(fs::exists(at(1) / "whole"));
	fs::path all = at(8);
	EXPECT_EQ(contentOf(all / "whole"), "synced");
	// Renamed, but the root not synced since: not there yet, and the
	// removed file still is; both change with the root's next sync (5).
	EXPECT_FALSE(fs::exists(at(4) / "unnamed"));
	EXPECT_EQ(contentOf(at(4) / "old"), "before");
	EXPECT_EQ(contentOf(all / "unnamed"), "synced");
	EXPECT_FALSE(fs::exists(all / "old"));
	// A name synced before its bytes: there, but empty.
	EXPECT_EQ(contentOf(all / "sub" / "empty"), "");
	EXPECT_EQ(contentOf(all / "new" / "deeper" / "f"), "f");
	EXPECT_TRUE(fs::is_empty(at(6) / "new" / "deeper"));
}

TEST_F(StoreDirTest, DurabilityModelFailsTheSyncsOfAProcessThatDied)
{
	fs::path dir = storeDir();
	ASSERT_TRUE(makeDirs(dir));
	DurabilityModel::start(dir);
	DurabilityModel::failSyncsAfter(1);
	auto r = writeFileAtomic(dir / "a", asBytes("a")); // the file's sync passes, the directory's fails
	EXPECT_EQ(codeOf(r), errc::kIo) << describe(r);
	EXPECT_TRUE(fs::exists(dir / "a")); // the page cache keeps it
	DurabilityModel::syncAgain();
	ASSERT_TRUE(writeFileAtomic(dir / "b", asBytes("b")));
	DurabilityModel::stop();
	fs::path out = root_ / "lost";
	ASSERT_TRUE(DurabilityModel::materialize(DurabilityModel::syncs(), out));
	// b's directory sync made a's name durable too.
	EXPECT_EQ(contentOf(out / "a"), "a");
	EXPECT_EQ(contentOf(out / "b"), "b");
}

} // namespace
} // namespace virtsnap::store::test
