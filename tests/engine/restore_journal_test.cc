// restore-instance's commit point (engine/restore_journal.h) on real files:
// the journal's renames put every restored image in place and the journal
// goes; a run that stopped after some renames is finished by the next; a
// rename that cannot be done keeps the journal for a later attempt.
#include <gtest/gtest.h>

#include <fstream>

#include "engine/restore_journal.h"
#include "tests/support/test_env.h"

namespace virtsnap::engine {
namespace {

namespace fs = std::filesystem;
using test::readFile;

class RestoreJournalTest : public ::testing::Test
{
protected:
	// Images "old-NAME" and restored files "new-NAME" for each name.
	std::vector<ImageSwap> makeSwaps(const std::vector<std::string> &names)
	{
		std::vector<ImageSwap> swaps;
		for (const std::string &n : names) {
			std::ofstream(tmp_.file(n + ".qcow2")) << "old-" << n;
			std::ofstream(tmp_.file("." + n + ".qcow2.tmp-restored")) << "new-" << n;
			swaps.push_back({tmp_.file("." + n + ".qcow2.tmp-restored"), tmp_.file(n + ".qcow2")});
		}
		return swaps;
	}
	fs::path journalDir() const { return restoreJournalDir(tmp_.file("state")); }

	test::TempDir tmp_{"vs-journal"};
};

TEST_F(RestoreJournalTest, FinishingPutsEveryImageInPlaceAndRemovesTheJournal)
{
	auto swaps = makeSwaps({"vda", "vdb", "vdc"});
	auto journal = writeRestoreJournal(journalDir(), "ss-0123456789abcdef0", swaps);
	ASSERT_TRUE(journal) << journal.error().toString();
	EXPECT_EQ(test::fileMode(journal->string()), 0600u);
	// Written, the journal changes nothing yet.
	EXPECT_EQ(readFile(tmp_.file("vdc.qcow2")), "old-vdc");
	ASSERT_TRUE(finishRestoreJournal(*journal));
	for (const char *n : {"vda", "vdb", "vdc"}) {
		EXPECT_EQ(readFile(tmp_.file(std::string(n) + ".qcow2")), std::string("new-") + n);
		EXPECT_FALSE(fs::exists(tmp_.file(std::string(".") + n + ".qcow2.tmp-restored")));
	}
	EXPECT_FALSE(fs::exists(*journal));
}

TEST_F(RestoreJournalTest, ARunStoppedAfterSomeRenamesIsFinishedByTheNext)
{
	auto swaps = makeSwaps({"vda", "vdb", "vdc"});
	auto journal = writeRestoreJournal(journalDir(), "ss-0123456789abcdef0", swaps);
	ASSERT_TRUE(journal) << journal.error().toString();
	// As if the process died after its first rename.
	fs::rename(swaps[0].restored, swaps[0].image);
	auto lines = finishRestoreJournals(journalDir());
	ASSERT_EQ(lines.size(), 1u);
	EXPECT_NE(lines[0].find("finished the interrupted restore-instance of ss-0123456789abcdef0"), std::string::npos)
		<< lines[0];
	for (const char *n : {"vda", "vdb", "vdc"})
		EXPECT_EQ(readFile(tmp_.file(std::string(n) + ".qcow2")), std::string("new-") + n);
	EXPECT_FALSE(fs::exists(*journal));
	EXPECT_TRUE(finishRestoreJournals(journalDir()).empty());
}

TEST_F(RestoreJournalTest, ARenameThatFailsKeepsTheJournalForTheNextAttempt)
{
	auto swaps = makeSwaps({"vda", "vdb"});
	// vdb's image is to go into a directory that is not there (yet).
	swaps[1].image = tmp_.file("moved/vdb.qcow2");
	auto journal = writeRestoreJournal(journalDir(), "ss-0123456789abcdef0", swaps);
	ASSERT_TRUE(journal) << journal.error().toString();
	auto failed = finishRestoreJournal(*journal);
	ASSERT_FALSE(failed);
	EXPECT_NE(failed.error().message.find(swaps[1].image.string()), std::string::npos) << failed.error().message;
	EXPECT_TRUE(fs::exists(*journal));
	EXPECT_TRUE(fs::exists(swaps[1].restored));
	fs::create_directories(tmp_.file("moved"));
	ASSERT_TRUE(finishRestoreJournal(*journal));
	EXPECT_EQ(readFile(tmp_.file("vda.qcow2")), "new-vda");
	EXPECT_EQ(readFile(tmp_.file("moved/vdb.qcow2")), "new-vdb");
	EXPECT_FALSE(fs::exists(*journal));
}

} // namespace
} // namespace virtsnap::engine
