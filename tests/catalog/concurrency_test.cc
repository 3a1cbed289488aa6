// One daemon, several threads, one Catalog; a CLI reading through its own
// connection, in this process or another. Nothing may fail with
// SQLITE_BUSY, and no reader may see half of a write.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "catalog_test_util.h"

namespace virtsnap::catalog::test {
namespace {

using ConcurrencyTest = CatalogDirTest;

constexpr unsigned kWriters = 4;
constexpr unsigned kPerWriter = 40;
constexpr unsigned kSetSize = 3;

// Each writer puts single snapshots pending with three tags, completes
// them with a fourth, and puts sets of kSetSize snapshots in one
// transaction.
SnapshotRow writerSnapshot(unsigned writer, unsigned i, bool completed = false)
{
	unsigned n = writer * 1000 + i;
	SnapshotRow r = snapshot(n, volId(writer), "pending", isoTime(i, writer),
				 "writer " + std::to_string(writer), {{"a", "1"}, {"b", "2"}, {"c", std::to_string(n)}});
	if (completed) {
		r.state = SnapshotState::Completed;
		r.progress = 100;
		r.tags.emplace_back("d", "done");
	}
	return r;
}

// Whatever a reader sees must be whole: the tags that go with the row's
// state (a row and its tags read at different moments would not match),
// and sets complete. Returns a description of the first violation, or "".
std::string checkPage(const Page &page)
{
	std::map<std::string, unsigned> sets;
	for (const SnapshotRow &s : page.snapshots) {
		if (!s.snapshotSetId.empty()) {
			sets[s.snapshotSetId]++;
			continue;
		}
		size_t want = s.state == SnapshotState::Completed ? 4 : 3;
		if (s.tags.size() != want)
			return s.snapshotId + " is " + name(s.state) + " with " + std::to_string(s.tags.size()) + " tags";
	}
	for (auto &[set, count] : sets)
		if (count != kSetSize)
			return "set " + set + " has " + std::to_string(count) + " snapshots";
	return "";
}

void writer(Catalog &cat, unsigned w, std::atomic<int> &errors, std::string &firstError)
{
	auto note = [&](const std::string &what) {
		if (errors.fetch_add(1) == 0)
			firstError = what;
	};
	for (unsigned i = 0; i < kPerWriter; i++) {
		SnapshotRow r = writerSnapshot(w, i);
		if (auto p = cat.putSnapshot(r); !p)
			note(p.error().toString());
		if (auto p = cat.putSnapshot(writerSnapshot(w, i, true)); !p)
			note(p.error().toString());
		if (i % 8 == 0) {
			auto t = cat.transaction([&]() -> Result<void> {
				for (unsigned k = 0; k < kSetSize; k++) {
					SnapshotRow m = snapshot(w * 1000 + 500 + i * kSetSize + k, volId(w), "pending",
								 isoTime(i, k));
					m.snapshotSetId = "set-" + std::to_string(w) + "-" + std::to_string(i);
					VS_TRY(cat.putSnapshot(m));
				}
				return {};
			});
			if (!t)
				note(t.error().toString());
		}
		JobRow j;
		j.jobId = "job-" + std::to_string(w) + "-" + std::to_string(i);
		j.state = JobState::Running;
		if (auto p = cat.putJob(j); !p)
			note(p.error().toString());
	}
}

void reader(Catalog &cat, std::atomic<bool> &stop, std::atomic<int> &errors, std::string &firstError,
	    std::atomic<int> &reads)
{
	auto note = [&](const std::string &what) {
		if (errors.fetch_add(1) == 0)
			firstError = what;
	};
	while (!stop.load()) {
		auto page = cat.describeSnapshots({}, {}, 0, "");
		if (!page) {
			note(page.error().toString());
			continue;
		}
		if (std::string bad = checkPage(*page); !bad.empty())
			note(bad);
		auto filtered = cat.describeSnapshots({{"tag:a", {"1"}}, {"status", {"pending", "completed"}}}, {}, 5, "");
		if (!filtered)
			note(filtered.error().toString());
		if (auto c = cat.countPending(volId(1)); !c)
			note(c.error().toString());
		if (auto j = cat.jobsInState(JobState::Running); !j)
			note(j.error().toString());
		reads++;
	}
}

TEST_F(ConcurrencyTest, WritersAndReadersOnOneCatalogAndASecondConnection)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	auto cli = openCatalog(); // as the CLI would: its own connection
	ASSERT_TRUE(cli);

	std::atomic<int> errors{0};
	std::string firstError;
	std::atomic<bool> stop{false};
	std::atomic<int> reads{0}, cliReads{0};
	std::vector<std::thread> readers;
	for (int i = 0; i < 2; i++)
		readers.emplace_back(reader, std::ref(*cat), std::ref(stop), std::ref(errors), std::ref(firstError),
				     std::ref(reads));
	readers.emplace_back(reader, std::ref(*cli), std::ref(stop), std::ref(errors), std::ref(firstError),
			     std::ref(cliReads));
	// The second connection writes as well, competing for the write lock
	// with the first: busy_timeout has to make them wait, not fail.
	std::thread cliWriter([&] {
		for (unsigned i = 0; i < 30 && !stop.load(); i++) {
			RequestRow q{"tok-" + std::to_string(i), "h", "{}", ""};
			if (auto p = cli->putRequest(q); !p && errors.fetch_add(1) == 0)
				firstError = p.error().toString();
		}
	});
	std::vector<std::thread> writers;
	for (unsigned w = 0; w < kWriters; w++)
		writers.emplace_back(writer, std::ref(*cat), w, std::ref(errors), std::ref(firstError));
	for (auto &t : writers)
		t.join();
	cliWriter.join();
	// Let the readers see the final state at least once more.
	int before = reads.load() + cliReads.load();
	while (reads.load() + cliReads.load() < before + 3)
		std::this_thread::sleep_for(std::chrono::milliseconds(1));
	stop = true;
	for (auto &t : readers)
		t.join();

	EXPECT_EQ(errors.load(), 0) << firstError;
	EXPECT_GT(reads.load(), 0);
	EXPECT_GT(cliReads.load(), 0);
	unsigned sets = (kPerWriter + 7) / 8;
	for (Catalog *c : {cat.get(), cli.get()}) {
		auto all = c->describeSnapshots({}, {}, 0, "");
		ASSERT_TRUE(all) << describe(all);
		EXPECT_EQ(all->snapshots.size(), kWriters * (kPerWriter + sets * kSetSize));
		EXPECT_EQ(checkPage(*all), "");
		auto completed = c->describeSnapshots({{"status", {"completed"}}}, {}, 0, "");
		ASSERT_TRUE(completed) << describe(completed);
		EXPECT_EQ(completed->snapshots.size(), kWriters * kPerWriter);
		auto jobs = c->jobsInState(JobState::Running);
		ASSERT_TRUE(jobs) << describe(jobs);
		EXPECT_EQ(jobs->size(), kWriters * kPerWriter);
		auto tok = c->getRequest("tok-29");
		ASSERT_TRUE(tok && *tok) << describe(tok);
	}
}

TEST_F(ConcurrencyTest, ReaderInAnotherProcess)
{
	{
		auto first = openCatalog();
		ASSERT_TRUE(first);
		ASSERT_TRUE(first->putSnapshot(writerSnapshot(0, 0)));
	}

	// The child reads through its own Catalog until it has seen every
	// snapshot the parent writes; its exit status says whether any read
	// failed or was torn. Forked while this process has no connection
	// open: SQLite's per-process lock bookkeeping must not be inherited.
	constexpr unsigned kTotal = 150;
	pid_t pid = ::fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		auto c = Catalog::open(file());
		if (!c)
			::_exit(2);
		auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
		while (std::chrono::steady_clock::now() < deadline) {
			auto page = (*c)->describeSnapshots({}, {}, 0, "");
			if (!page)
				::_exit(3);
			if (!checkPage(*page).empty())
				::_exit(4);
			if (page->snapshots.size() == kTotal)
				::_exit(0);
		}
		::_exit(5);
	}
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	for (unsigned i = 1; i < kTotal; i++) {
		ASSERT_TRUE(cat->putSnapshot(writerSnapshot(0, i))) << i;
		ASSERT_TRUE(cat->putSnapshot(writerSnapshot(0, i - 1, true))) << i;
	}
	int status = 0;
	ASSERT_EQ(::waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status)) << status;
	EXPECT_EQ(WEXITSTATUS(status), 0) << "2: open failed, 3: read failed, 4: torn read, 5: never saw all";
}

} // namespace
} // namespace virtsnap::catalog::test
