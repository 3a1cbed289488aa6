// The backend contract (plugin/store/backend.h), one suite for every
// backend: a local directory, RADOS and S3 on a real Ceph cluster.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "store/lease.h"
#include "store_test_util.h"
#include "tests/support/backends.h"
#include "tests/support/test_env.h"

namespace virtsnap::store::test {
namespace {

using virtsnap::test::backendNames;

class BackendTest : public ::testing::TestWithParam<std::string>
{
protected:
	void SetUp() override { REQUIRE_BACKEND(GetParam(), backend_, url_); }

	std::set<std::string> listed(const std::string &prefix)
	{
		std::set<std::string> names;
		auto r = backend_->list(prefix, [&](const ObjectInfo &info) { names.insert(info.name); });
		EXPECT_TRUE(r) << describe(r);
		return names;
	}

	std::string text(const std::string &name)
	{
		auto data = backend_->get(name);
		return data ? std::string(data->begin(), data->end()) : "<" + data.error().toString() + ">";
	}

	static std::span<const uint8_t> bytes(const std::string &s) { return {(const uint8_t *)s.data(), s.size()}; }

	std::unique_ptr<Backend> backend_;
	std::string url_;
};

TEST_P(BackendTest, PutThenGetReturnsTheSameBytesSmallEmptyAndLarge)
{
	ASSERT_TRUE(backend_->put("a/empty", {}));
	Bytes big = randomData((33u << 20) + 123, 1); // above a pack's size
	ASSERT_TRUE(backend_->put("a/big", big));
	ASSERT_TRUE(backend_->put("a/small", bytes("hello")));
	EXPECT_EQ(text("a/small"), "hello");
	auto empty = backend_->get("a/empty");
	ASSERT_TRUE(empty) << describe(empty);
	EXPECT_TRUE(empty->empty());
	auto back = backend_->get("a/big");
	ASSERT_TRUE(back) << describe(back);
	EXPECT_TRUE(*back == big);
	auto info = backend_->stat("a/big");
	ASSERT_TRUE(info) << describe(info);
	EXPECT_EQ(info->size, big.size());
	auto now = backend_->now();
	ASSERT_TRUE(now) << describe(now);
	EXPECT_LT(std::chrono::abs(*now - info->modified), std::chrono::seconds(60));
}

TEST_P(BackendTest, PutReplacesAndReadersSeeOneWholeObjectOrTheOther)
{
	const std::string a(256 << 10, 'a'), b(300 << 10, 'b');
	ASSERT_TRUE(backend_->put("obj", bytes(a)));
	std::atomic<bool> stop{false};
	std::atomic<int> torn{0}, reads{0};
	std::thread reader([&] {
		while (!stop) {
			auto got = backend_->get("obj");
			if (!got || !((got->size() == a.size() && std::all_of(got->begin(), got->end(), [](uint8_t c) { return c == 'a'; })) ||
				      (got->size() == b.size() && std::all_of(got->begin(), got->end(), [](uint8_t c) { return c == 'b'; }))))
				torn++;
			reads++;
		}
	});
	for (int i = 0; i < 20; i++)
		ASSERT_TRUE(backend_->put("obj", bytes(i % 2 ? a : b)));
	while (reads < 5)
		std::this_thread::yield();
	stop = true;
	reader.join();
	EXPECT_EQ(torn, 0) << "of " << reads << " reads";
	EXPECT_EQ(text("obj"), a);
}

TEST_P(BackendTest, CreateIsCreateIfAbsentAndOneOfManyRacersWins)
{
	ASSERT_TRUE(backend_->create("once", bytes("first")));
	auto again = backend_->create("once", bytes("second"));
	ASSERT_FALSE(again);
	EXPECT_EQ(again.error().code, errc::kObjectExists) << describe(again);
	EXPECT_EQ(text("once"), "first");

	for (int round = 0; round < 3; round++) {
		std::string name = "race-" + std::to_string(round);
		std::atomic<int> won{0}, lost{0};
		std::vector<std::thread> racers;
		for (int i = 0; i < 8; i++)
			racers.emplace_back([&, i] {
				auto r = backend_->create(name, bytes("racer " + std::to_string(i)));
				if (r)
					won++;
				else if (r.error().code == errc::kObjectExists)
					lost++;
			});
		for (std::thread &t : racers)
			t.join();
		EXPECT_EQ(won, 1) << name;
		EXPECT_EQ(lost, 7) << name;
		EXPECT_EQ(text(name).substr(0, 6), "racer ");
	}
}

TEST_P(BackendTest, RangedReadsAnywhereAndNotPastTheEnd)
{
	Bytes data = randomData(1 << 20, 2);
	ASSERT_TRUE(backend_->put("r", data));
	for (auto [offset, length] : std::vector<std::pair<uint64_t, uint64_t>>{
		     {0, 1}, {0, data.size()}, {1, 4095}, {4096, 65536}, {data.size() - 7, 7}, {500000, 1}}) {
		Bytes out(length);
		auto r = backend_->getRange("r", offset, out);
		ASSERT_TRUE(r) << offset << "+" << length << ": " << describe(r);
		EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin() + long(offset))) << offset;
	}
	Bytes past(10);
	EXPECT_FALSE(backend_->getRange("r", data.size() - 5, past));
}

TEST_P(BackendTest, ListingIsByPrefixAndSeesEveryObjectPutBefore)
{
	for (const char *name : {"packs/ab/x.pack", "packs/ab/x.idx", "packs/cd/y.pack", "packsx/z", "snapshots/s1",
				 "records/volumes/v.json.sealed"})
		ASSERT_TRUE(backend_->put(name, bytes(name)));
	EXPECT_EQ(listed("packs/"), (std::set<std::string>{"packs/ab/x.pack", "packs/ab/x.idx", "packs/cd/y.pack"}));
	EXPECT_EQ(listed("packs/ab/"), (std::set<std::string>{"packs/ab/x.pack", "packs/ab/x.idx"}));
	EXPECT_EQ(listed("snapshots/"), (std::set<std::string>{"snapshots/s1"}));
	EXPECT_EQ(listed("records/volumes/"), (std::set<std::string>{"records/volumes/v.json.sealed"}));
	EXPECT_EQ(listed("none/"), std::set<std::string>{});
	EXPECT_EQ(listed("").size(), 6u);
	// Many objects: listings that come in pages come whole.
	for (int i = 0; i < 1100; i++)
		ASSERT_TRUE(backend_->put("many/" + std::to_string(i), bytes("x")));
	EXPECT_EQ(listed("many/").size(), 1100u);
}

TEST_P(BackendTest, AbsentObjectsAreNotFoundAndRemovingOneIsNoError)
{
	auto get = backend_->get("nothing");
	ASSERT_FALSE(get);
	EXPECT_EQ(get.error().code, errc::kObjectNotFound) << describe(get);
	Bytes out(4);
	auto range = backend_->getRange("nothing", 0, out);
	ASSERT_FALSE(range);
	EXPECT_EQ(range.error().code, errc::kObjectNotFound) << describe(range);
	auto info = backend_->stat("nothing");
	ASSERT_FALSE(info);
	EXPECT_EQ(info.error().code, errc::kObjectNotFound) << describe(info);
	EXPECT_TRUE(backend_->remove("nothing"));
	ASSERT_TRUE(backend_->put("there", bytes("x")));
	EXPECT_TRUE(backend_->remove("there"));
	EXPECT_EQ(backend_->stat("there").error().code, errc::kObjectNotFound);
	EXPECT_TRUE(listed("").empty());
}

TEST_P(BackendTest, AWriterShowsNothingUntilCommitAndNothingWhenDropped)
{
	Bytes data = randomData((5u << 20) + 17, 3);
	{
		auto w = backend_->openWriter("w/kept");
		ASSERT_TRUE(w) << describe(w);
		for (size_t off = 0; off < data.size(); off += 300000)
			ASSERT_TRUE((*w)->append(std::span<const uint8_t>(data).subspan(off, std::min<size_t>(300000, data.size() - off))));
		EXPECT_EQ((*w)->size(), data.size());
		EXPECT_EQ(backend_->stat("w/kept").error().code, errc::kObjectNotFound);
		EXPECT_TRUE(listed("w/").empty());
		ASSERT_TRUE((*w)->commit());
	}
	auto back = backend_->get("w/kept");
	ASSERT_TRUE(back) << describe(back);
	EXPECT_TRUE(*back == data);
	{
		auto w = backend_->openWriter("w/dropped");
		ASSERT_TRUE(w) << describe(w);
		ASSERT_TRUE((*w)->append(data));
	}
	EXPECT_EQ(listed("w/"), std::set<std::string>{"w/kept"});
}

TEST_P(BackendTest, TwoConcurrentWritersEachGetTheirOwnObject)
{
	Bytes one = randomData(3u << 20, 4), two = randomData(3u << 20, 5);
	auto write = [&](const std::string &name, const Bytes &data) {
		auto w = backend_->openWriter(name);
		ASSERT_TRUE(w) << describe(w);
		for (size_t off = 0; off < data.size(); off += 65536)
			ASSERT_TRUE((*w)->append(std::span<const uint8_t>(data).subspan(off, 65536)));
		ASSERT_TRUE((*w)->commit());
	};
	std::thread a([&] { write("c/one", one); });
	std::thread b([&] { write("c/two", two); });
	a.join();
	b.join();
	EXPECT_TRUE(backend_->get("c/one").value_or(Bytes{}) == one);
	EXPECT_TRUE(backend_->get("c/two").value_or(Bytes{}) == two);
}

// A process killed in the middle of writing an object (SIGKILL: no unwinding)
// leaves nothing that a reader or a listing sees.
TEST_P(BackendTest, AWriterKilledMidObjectLeavesNothingVisible)
{
	int ready[2];
	ASSERT_EQ(::pipe(ready), 0);
	pid_t child = ::fork();
	ASSERT_GE(child, 0);
	if (child == 0) {
		auto own = store::openBackend(url_, virtsnap::test::backendNamed(GetParam())->settings);
		if (!own)
			::_exit(2);
		auto w = (*own)->openWriter("k/partial");
		if (!w)
			::_exit(3);
		Bytes data = randomData(1u << 20, 6);
		for (int i = 0; i < 4; i++)
			(void)(*w)->append(data);
		char c = 1;
		(void)!::write(ready[1], &c, 1);
		::pause();
		::_exit(0);
	}
	::close(ready[1]);
	char c = 0;
	ASSERT_EQ(::read(ready[0], &c, 1), 1);
	::close(ready[0]);
	::kill(child, SIGKILL);
	int status = 0;
	::waitpid(child, &status, 0);
	EXPECT_TRUE(WIFSIGNALED(status));
	EXPECT_EQ(backend_->stat("k/partial").error().code, errc::kObjectNotFound);
	EXPECT_TRUE(listed("").empty());
	// What it left (a temporary file, an upload) is garbage for the sweep,
	// once old enough.
	auto swept = backend_->sweepPartial(std::chrono::seconds(0), false);
	ASSERT_TRUE(swept) << describe(swept);
	EXPECT_TRUE(listed("").empty());
}

TEST_P(BackendTest, LeasesExcludeGcAndExpire)
{
	auto shared = Lease::acquire(*backend_, Lease::Kind::Shared, "snapshot");
	ASSERT_TRUE(shared) << describe(shared);
	auto also = Lease::acquire(*backend_, Lease::Kind::Shared, "restore");
	ASSERT_TRUE(also) << describe(also);
	auto gc = Lease::acquire(*backend_, Lease::Kind::Exclusive, "gc");
	ASSERT_FALSE(gc);
	EXPECT_EQ(gc.error().code, errc::kIncorrectState);
	shared->reset();
	also->reset();
	gc = Lease::acquire(*backend_, Lease::Kind::Exclusive, "gc");
	ASSERT_TRUE(gc) << describe(gc);
	EXPECT_FALSE(Lease::acquire(*backend_, Lease::Kind::Shared, "snapshot"));
	EXPECT_FALSE(Lease::acquire(*backend_, Lease::Kind::Exclusive, "gc"));
	gc->reset();
	auto held = heldLeases(*backend_);
	ASSERT_TRUE(held) << describe(held);
	EXPECT_TRUE(held->empty());

	// One that is no longer renewed holds for its duration, then not.
	LeaseOptions brief{std::chrono::seconds(2), std::chrono::seconds(3600)};
	auto stale = Lease::acquire(*backend_, Lease::Kind::Shared, "cut off", brief);
	ASSERT_TRUE(stale) << describe(stale);
	EXPECT_FALSE(Lease::acquire(*backend_, Lease::Kind::Exclusive, "gc", brief));
	std::this_thread::sleep_for(std::chrono::milliseconds(3500));
	EXPECT_FALSE((*stale)->held());
	EXPECT_TRUE(Lease::acquire(*backend_, Lease::Kind::Exclusive, "gc", brief));
	auto removed = removeStaleLeases(*backend_, brief);
	ASSERT_TRUE(removed) << describe(removed);
	EXPECT_EQ(*removed, 1u);
}

INSTANTIATE_TEST_SUITE_P(, BackendTest, ::testing::ValuesIn(virtsnap::test::backendNames()),
			 [](const auto &info) { return info.param; });

} // namespace
} // namespace virtsnap::store::test
