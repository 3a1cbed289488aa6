// describeSnapshots as EC2's DescribeSnapshots: each filter, wildcards,
// OR within a filter and AND across filters, snapshot ids, keyset paging
// and the errors for what a client may get wrong.
#include <algorithm>
#include <set>

#include "catalog/snapshot_query.h"
#include "catalog_test_util.h"

namespace virtsnap::catalog::test {
namespace {

class DescribeTest : public CatalogDirTest
{
protected:
	void SetUp() override
	{
		cat_ = openCatalog();
		ASSERT_TRUE(cat_);
		// 1..6, with 3 and 4 sharing a start time (the id breaks the tie).
		put(snapshot(1, volId(1), "completed", "2026-01-01T10:00:00.000Z", "nightly backup",
			     {{"env", "prod"}, {"team", "db"}}));
		put(snapshot(2, volId(1), "pending", "2026-01-01T10:00:00.500Z", "Nightly Backup", {{"env", "dev"}}));
		put(snapshot(3, volId(2), "error", "2026-01-02T08:30:00.000Z", "weekly *special* [a] 100%",
			     {{"env", "prod*"}}));
		put(snapshot(4, volId(2), "completed", "2026-01-02T08:30:00.000Z", "weekly?", {{"owner", "\u00e9mile"}}));
		put(snapshot(5, volId(3), "completed", "2026-02-01T00:00:00.000Z", "it's \"quoted\" \\ back",
			     {{"team", "prod"}}));
		SnapshotRow six = snapshot(6, volId(3), "pending", "2026-02-01T00:00:01.000Z", "");
		six.ownerId = "123456789012";
		six.encrypted = true;
		six.progress = 80;
		six.volumeSize = (uint64_t(10) << 30) + 1; // 10 GiB and a byte: shown as 11
		six.productCodes = {"abc123:marketplace", "zz9:devpay"};
		put(six);
	}

	void put(const SnapshotRow &row) { ASSERT_TRUE(cat_->putSnapshot(row)) << row.snapshotId; }

	// The ids the filters select, in the order returned; an error fails.
	std::vector<std::string> ids(const std::vector<Filter> &filters, const std::vector<std::string> &snapshotIds = {})
	{
		auto page = cat_->describeSnapshots(filters, snapshotIds, 0, "");
		EXPECT_TRUE(page) << describe(page);
		if (!page)
			return {"<error>"};
		EXPECT_EQ(page->nextToken, "") << "no paging asked for";
		return idsOf(page->snapshots);
	}

	static std::vector<std::string> S(std::initializer_list<unsigned> ns)
	{
		std::vector<std::string> out;
		for (unsigned n : ns)
			out.push_back(snapId(n));
		return out;
	}

	std::unique_ptr<Catalog> cat_;
};

TEST_F(DescribeTest, NoFiltersListsAllByStartTimeThenId)
{
	EXPECT_EQ(ids({}), S({1, 2, 3, 4, 5, 6}));
	auto page = cat_->describeSnapshots({}, {}, 0, "");
	ASSERT_TRUE(page) << describe(page);
	// Rows come back whole, tags included.
	EXPECT_EQ(page->snapshots[0].tags, (Tags{{"env", "prod"}, {"team", "db"}}));
	EXPECT_EQ(page->snapshots[5].ownerId, "123456789012");
}

TEST_F(DescribeTest, EmptyCatalogListsNothing)
{
	ASSERT_TRUE(cat_->clear());
	EXPECT_EQ(ids({}), S({}));
	EXPECT_EQ(ids({{"status", {"*"}}}), S({}));
}

TEST_F(DescribeTest, StatusVolumeIdSnapshotIdOwnerId)
{
	EXPECT_EQ(ids({{"status", {"pending"}}}), S({2, 6}));
	EXPECT_EQ(ids({{"status", {"error"}}}), S({3}));
	EXPECT_EQ(ids({{"status", {"Pending"}}}), S({})) << "values are case-sensitive";
	EXPECT_EQ(ids({{"volume-id", {volId(2)}}}), S({3, 4}));
	EXPECT_EQ(ids({{"snapshot-id", {snapId(5)}}}), S({5}));
	EXPECT_EQ(ids({{"owner-id", {"123456789012"}}}), S({6}));
	EXPECT_EQ(ids({{"owner-id", {"self"}}}), S({1, 2, 3, 4, 5}));
}

TEST_F(DescribeTest, EncryptedProgressVolumeSize)
{
	EXPECT_EQ(ids({{"encrypted", {"true"}}}), S({6}));
	EXPECT_EQ(ids({{"encrypted", {"false"}}}), S({1, 2, 3, 4, 5}));
	EXPECT_EQ(ids({{"progress", {"80%"}}}), S({6}));
	EXPECT_EQ(ids({{"progress", {"8*"}}}), S({6}));
	EXPECT_EQ(ids({{"volume-size", {"11"}}}), S({6})) << "GiB, rounded up";
	EXPECT_EQ(ids({{"volume-size", {"10"}}}), S({}));
	EXPECT_EQ(ids({{"volume-size", {"0"}}}), S({1, 2, 3, 4, 5}));
}

TEST_F(DescribeTest, DescriptionExactAndWildcards)
{
	EXPECT_EQ(ids({{"description", {"nightly backup"}}}), S({1}));
	EXPECT_EQ(ids({{"description", {"nightly*"}}}), S({1})) << "case-sensitive: not 'Nightly Backup'";
	EXPECT_EQ(ids({{"description", {"*ightly*"}}}), S({1, 2}));
	EXPECT_EQ(ids({{"description", {"?ightly backup"}}}), S({1}));
	EXPECT_EQ(ids({{"description", {"?ightly ?ackup"}}}), S({1, 2}));
	EXPECT_EQ(ids({{"description", {"weekly?"}}}), S({4})) << "? is exactly one character";
	EXPECT_EQ(ids({{"description", {"weekly*"}}}), S({3, 4}));
	EXPECT_EQ(ids({{"description", {"*"}}}), S({1, 2, 3, 4, 5, 6})) << "* matches the empty description too";
	EXPECT_EQ(ids({{"description", {""}}}), S({6}));
	EXPECT_EQ(ids({{"description", {"?*"}}}), S({1, 2, 3, 4, 5}));
}

TEST_F(DescribeTest, SpecialCharactersMatchThemselves)
{
	// GLOB's own class syntax is not a wildcard here.
	EXPECT_EQ(ids({{"description", {"*[a]*"}}}), S({3}));
	EXPECT_EQ(ids({{"description", {"*[ab]*"}}}), S({}));
	// Escaped wildcards are literal.
	EXPECT_EQ(ids({{"description", {"weekly \\*special\\* *"}}}), S({3}));
	EXPECT_EQ(ids({{"description", {"weekly \\*spec*"}}}), S({3}));
	EXPECT_EQ(ids({{"description", {"weekly\\?"}}}), S({4}));
	EXPECT_EQ(ids({{"description", {"weekly\\*"}}}), S({}));
	// A backslash before anything else is itself; "\\\\" is one backslash.
	EXPECT_EQ(ids({{"description", {"it's \"quoted\" \\ back"}}}), S({5}));
	EXPECT_EQ(ids({{"description", {"it's \"quoted\" \\\\ back"}}}), S({5}));
	EXPECT_EQ(ids({{"description", {"*100%"}}}), S({3})) << "% is no LIKE wildcard here";
	EXPECT_EQ(ids({{"description", {"%"}}}), S({}));
	EXPECT_EQ(ids({{"description", {"_ightly backup"}}}), S({}));
	// Values never become SQL.
	EXPECT_EQ(ids({{"description", {"' OR 1=1 --"}}}), S({}));
	EXPECT_EQ(ids({{"description", {"x'); DROP TABLE snapshots; --"}}}), S({}));
	EXPECT_EQ(ids({}).size(), 6u);
}

TEST_F(DescribeTest, StartTime)
{
	EXPECT_EQ(ids({{"start-time", {"2026-01-02T08:30:00.000Z"}}}), S({3, 4}));
	EXPECT_EQ(ids({{"start-time", {"2026-01-01*"}}}), S({1, 2}));
	EXPECT_EQ(ids({{"start-time", {"2026-02-*"}}}), S({5, 6}));
	EXPECT_EQ(ids({{"start-time", {"2026-01-01T10:00:00.?00Z"}}}), S({1, 2}));
	// To the second, without milliseconds: every time in that second.
	EXPECT_EQ(ids({{"start-time", {"2026-01-01T10:00:00Z"}}}), S({1, 2}));
	EXPECT_EQ(ids({{"start-time", {"2026-02-01T00:00:01Z"}}}), S({6}));
	EXPECT_EQ(ids({{"start-time", {"2026-01-01T10:00:00"}}}), S({})) << "not a prefix match";
	EXPECT_EQ(ids({{"start-time", {"2025*"}}}), S({}));
}

TEST_F(DescribeTest, OrWithinAFilterAndAcrossFilters)
{
	EXPECT_EQ(ids({{"status", {"pending", "error"}}}), S({2, 3, 6}));
	EXPECT_EQ(ids({{"volume-id", {volId(1), volId(3)}}}), S({1, 2, 5, 6}));
	EXPECT_EQ(ids({{"volume-id", {volId(1), volId(3)}}, {"status", {"pending"}}}), S({2, 6}));
	EXPECT_EQ(ids({{"status", {"completed"}}, {"tag:env", {"prod"}}}), S({1}));
	EXPECT_EQ(ids({{"status", {"completed"}}, {"tag:env", {"prod"}}, {"volume-id", {volId(2)}}}), S({}));
	// The same filter twice: both must hold.
	EXPECT_EQ(ids({{"status", {"completed", "pending"}}, {"status", {"pending", "error"}}}), S({2, 6}));
	EXPECT_EQ(ids({{"description", {"*ightly*", "weekly?"}}, {"status", {"completed"}}}), S({1, 4}));
}

TEST_F(DescribeTest, TagKeyAndTagValue)
{
	EXPECT_EQ(ids({{"tag:env", {"prod"}}}), S({1}));
	EXPECT_EQ(ids({{"tag:env", {"prod*"}}}), S({1, 3}));
	EXPECT_EQ(ids({{"tag:env", {"prod\\*"}}}), S({3}));
	EXPECT_EQ(ids({{"tag:env", {"prod", "dev"}}}), S({1, 2}));
	EXPECT_EQ(ids({{"tag:env", {"*"}}}), S({1, 2, 3}));
	EXPECT_EQ(ids({{"tag:team", {"prod"}}}), S({5})) << "the value of that key, not of any key";
	EXPECT_EQ(ids({{"tag:owner", {"\u00e9mile"}}}), S({4}));
	EXPECT_EQ(ids({{"tag:owner", {"?mile"}}}), S({4})) << "? is one character, even a multi-byte one";
	EXPECT_EQ(ids({{"tag:Env", {"prod"}}}), S({})) << "keys are case-sensitive";
	EXPECT_EQ(ids({{"tag:e*", {"prod"}}}), S({})) << "no wildcards in the key of tag:KEY";
	EXPECT_EQ(ids({{"tag:env", {"prod"}}, {"tag:team", {"db"}}}), S({1}));

	EXPECT_EQ(ids({{"tag-key", {"team"}}}), S({1, 5}));
	EXPECT_EQ(ids({{"tag-key", {"env", "owner"}}}), S({1, 2, 3, 4}));
	EXPECT_EQ(ids({{"tag-key", {"t*"}}}), S({1, 5}));
	EXPECT_EQ(ids({{"tag-key", {"*"}}}), S({1, 2, 3, 4, 5}));
	EXPECT_EQ(ids({{"tag-key", {"prod"}}}), S({})) << "a value is not a key";
	EXPECT_EQ(ids({{"tag-key", {"team"}}, {"tag-key", {"env"}}}), S({1}));
}

TEST_F(DescribeTest, ProductCodeAndItsType)
{
	SnapshotRow seven = snapshot(7, volId(1), "completed", "2026-03-01T00:00:00.000Z", "");
	seven.productCodes = {"abc123:devpay"};
	put(seven);
	EXPECT_EQ(ids({{"product-code", {"abc123"}}}), S({6, 7}));
	EXPECT_EQ(ids({{"product-code", {"zz9"}}}), S({6}));
	EXPECT_EQ(ids({{"product-code", {"abc"}}}), S({})) << "the whole id";
	EXPECT_EQ(ids({{"product-code", {"abc*"}}}), S({6, 7}));
	EXPECT_EQ(ids({{"product-code", {"marketplace"}}}), S({})) << "a type is not an id";
	EXPECT_EQ(ids({{"product-code.type", {"devpay"}}}), S({6, 7}));
	EXPECT_EQ(ids({{"product-code.type", {"marketplace"}}}), S({6}));
	EXPECT_EQ(ids({{"product-code", {"abc123"}}, {"product-code.type", {"marketplace"}}}), S({6}))
		<< "each filter on its own: snapshot 6 has an abc123 and a marketplace code";
}

TEST_F(DescribeTest, BadFiltersAreInvalidParameterValue)
{
	auto unknown = cat_->describeSnapshots({{"status", {"completed"}}, {"colour", {"blue"}}}, {}, 0, "");
	ASSERT_FALSE(unknown);
	EXPECT_EQ(unknown.error().code, errc::kInvalidParameterValue);
	EXPECT_NE(unknown.error().message.find("unknown filter 'colour'"), std::string::npos) << unknown.error().message;

	auto wrongCase = cat_->describeSnapshots({{"Status", {"completed"}}}, {}, 0, "");
	EXPECT_EQ(codeOf(wrongCase), errc::kInvalidParameterValue);

	auto noValues = cat_->describeSnapshots({{"status", {}}}, {}, 0, "");
	ASSERT_FALSE(noValues);
	EXPECT_EQ(noValues.error().code, errc::kInvalidParameterValue);
	EXPECT_NE(noValues.error().message.find("'status'"), std::string::npos) << noValues.error().message;

	auto noKey = cat_->describeSnapshots({{"tag:", {"x"}}}, {}, 0, "");
	EXPECT_EQ(codeOf(noKey), errc::kInvalidParameterValue);
}

TEST_F(DescribeTest, SnapshotIds)
{
	EXPECT_EQ(ids({}, {snapId(5), snapId(2)}), S({2, 5})) << "in the listing's order";
	EXPECT_EQ(ids({}, {snapId(2), snapId(2)}), S({2}));
	// Filters still apply; an id that exists but does not match is just
	// not listed.
	EXPECT_EQ(ids({{"status", {"completed"}}}, {snapId(2), snapId(4)}), S({4}));

	auto missing = cat_->describeSnapshots({}, {snapId(1), snapId(404)}, 0, "");
	ASSERT_FALSE(missing);
	EXPECT_EQ(missing.error().code, errc::kSnapshotNotFound);
	EXPECT_NE(missing.error().message.find(snapId(404)), std::string::npos) << missing.error().message;
	EXPECT_EQ(missing.error().message.find(snapId(1)), std::string::npos) << missing.error().message;

	auto two = cat_->describeSnapshots({{"status", {"pending"}}}, {snapId(404), snapId(405)}, 0, "");
	ASSERT_FALSE(two);
	EXPECT_EQ(two.error().code, errc::kSnapshotNotFound);
	EXPECT_NE(two.error().message.find(snapId(404)), std::string::npos) << two.error().message;
	EXPECT_NE(two.error().message.find(snapId(405)), std::string::npos) << two.error().message;
}

TEST_F(DescribeTest, MaxResultsBounds)
{
	for (int bad : {-1, 1, 4, 1001, 100000}) {
		auto r = cat_->describeSnapshots({}, {}, bad, "");
		ASSERT_FALSE(r) << bad;
		EXPECT_EQ(r.error().code, errc::kInvalidParameterValue) << bad;
		EXPECT_NE(r.error().message.find("MaxResults"), std::string::npos) << r.error().message;
	}
	for (int good : {0, 5, 6, 1000}) {
		auto r = cat_->describeSnapshots({}, {}, good, "");
		ASSERT_TRUE(r) << good << ": " << describe(r);
		EXPECT_EQ(r->snapshots.size(), good == 5 ? 5u : 6u) << good;
		EXPECT_EQ(r->nextToken.empty(), good != 5) << good;
	}
}

TEST_F(DescribeTest, MalformedNextTokens)
{
	auto first = cat_->describeSnapshots({}, {}, 5, "");
	ASSERT_TRUE(first) << describe(first);
	ASSERT_FALSE(first->nextToken.empty());
	std::string good = first->nextToken;
	std::string flipped = good;
	flipped[0] = flipped[0] == '0' ? '2' : '0'; // the version byte
	for (const std::string &bad : {std::string("zz"), std::string("abc"), std::string("not a token"),
				       good.substr(0, good.size() - 1), good.substr(0, 2), flipped,
				       std::string("01") + std::string("41", 2), std::string(2048, 'a'),
				       // A version byte and a key with two separators.
				       std::string("0141004200") + "43"}) {
		auto r = cat_->describeSnapshots({}, {}, 5, bad);
		ASSERT_FALSE(r) << bad;
		EXPECT_EQ(r.error().code, errc::kInvalidParameterValue) << bad;
		EXPECT_NE(r.error().message.find("NextToken"), std::string::npos) << r.error().message;
	}
	auto next = cat_->describeSnapshots({}, {}, 5, good);
	ASSERT_TRUE(next) << describe(next);
	EXPECT_EQ(idsOf(next->snapshots), S({6}));
}

class PagingTest : public CatalogDirTest
{
};

// All pages of a listing, checking that none is empty and that only the
// last has no token.
std::vector<std::string> allPages(Catalog &cat, const std::vector<Filter> &filters, int maxResults, int *pages)
{
	std::vector<std::string> out;
	std::string token;
	*pages = 0;
	do {
		auto page = cat.describeSnapshots(filters, {}, maxResults, token);
		EXPECT_TRUE(page) << describe(page);
		if (!page || ++*pages > 100)
			return out;
		EXPECT_FALSE(page->snapshots.empty()) << "page " << *pages;
		EXPECT_LE(page->snapshots.size(), size_t(maxResults));
		if (!page->nextToken.empty()) {
			EXPECT_EQ(page->snapshots.size(), size_t(maxResults)) << "only the last page is short";
		}
		for (const SnapshotRow &s : page->snapshots)
			out.push_back(s.snapshotId);
		token = page->nextToken;
	} while (!token.empty());
	return out;
}

TEST_F(PagingTest, TwentyThreeSnapshotsInPagesOfFive)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	// Inserted in a scrambled order, with clusters of equal start times,
	// so the order comes from the query and the id breaks ties across
	// page boundaries.
	std::vector<std::string> expected;
	for (unsigned n = 0; n < 23; n++)
		expected.push_back(snapId(n));
	for (unsigned k = 0; k < 23; k++) {
		unsigned n = (k * 7) % 23;
		ASSERT_TRUE(cat->putSnapshot(snapshot(n, volId(n % 2), n % 2 ? "pending" : "completed", isoTime(n / 4))));
	}
	int pages = 0;
	auto got = allPages(*cat, {}, 5, &pages);
	EXPECT_EQ(pages, 5);
	EXPECT_EQ(got, expected);
	EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 23u) << "each exactly once";

	// With a filter: the pages cover exactly what it selects.
	auto odd = allPages(*cat, {{"status", {"pending"}}}, 5, &pages);
	std::vector<std::string> expectedOdd;
	for (unsigned n = 1; n < 23; n += 2)
		expectedOdd.push_back(snapId(n));
	EXPECT_EQ(odd, expectedOdd);
	EXPECT_EQ(pages, 3);

	// A listing that ends on a page boundary has no trailing empty page.
	for (unsigned n = 20; n < 23; n++)
		ASSERT_TRUE(cat->removeSnapshot(snapId(n)));
	auto twenty = allPages(*cat, {}, 5, &pages);
	EXPECT_EQ(pages, 4);
	EXPECT_EQ(twenty.size(), 20u);
}

TEST_F(PagingTest, ChangesBetweenPagesShiftNothing)
{
	auto cat = openCatalog();
	ASSERT_TRUE(cat);
	for (unsigned n = 10; n < 22; n++)
		ASSERT_TRUE(cat->putSnapshot(snapshot(n, volId(1), "completed", isoTime(n))));
	auto first = cat->describeSnapshots({}, {}, 5, "");
	ASSERT_TRUE(first) << describe(first);
	EXPECT_EQ(idsOf(first->snapshots).back(), snapId(14));
	// Before the token's position: not seen by later pages. After it: seen.
	ASSERT_TRUE(cat->putSnapshot(snapshot(1, volId(1), "completed", isoTime(1))));
	ASSERT_TRUE(cat->removeSnapshot(snapId(11)));
	ASSERT_TRUE(cat->removeSnapshot(snapId(14)));
	ASSERT_TRUE(cat->putSnapshot(snapshot(30, volId(1), "completed", isoTime(30))));
	auto second = cat->describeSnapshots({}, {}, 5, first->nextToken);
	ASSERT_TRUE(second) << describe(second);
	EXPECT_EQ(idsOf(second->snapshots), (std::vector<std::string>{snapId(15), snapId(16), snapId(17), snapId(18),
								       snapId(19)}));
	auto third = cat->describeSnapshots({}, {}, 5, second->nextToken);
	ASSERT_TRUE(third) << describe(third);
	EXPECT_EQ(idsOf(third->snapshots), (std::vector<std::string>{snapId(20), snapId(21), snapId(30)}));
	EXPECT_EQ(third->nextToken, "");
}

TEST(SnapshotQueryTest, PatternTranslation)
{
	Pattern plain = parsePattern("abc");
	EXPECT_FALSE(plain.wildcard);
	EXPECT_EQ(plain.literal, "abc");
	Pattern star = parsePattern("a*b?c");
	EXPECT_TRUE(star.wildcard);
	EXPECT_EQ(star.glob, "a*b?c");
	Pattern escaped = parsePattern("a\\*b\\?c\\\\d\\e");
	EXPECT_FALSE(escaped.wildcard);
	EXPECT_EQ(escaped.literal, "a*b?c\\d\\e");
	EXPECT_EQ(escaped.glob, "a[*]b[?]c\\d\\e");
	Pattern bracket = parsePattern("[x]*");
	EXPECT_TRUE(bracket.wildcard);
	EXPECT_EQ(bracket.glob, "[[]x]*");
	Pattern trailing = parsePattern("a\\");
	EXPECT_EQ(trailing.literal, "a\\");
}

TEST(SnapshotQueryTest, TokensRoundTrip)
{
	for (PageKey key : {PageKey{"2026-01-01T00:00:00.000Z", "snap-0123456789abcdef0"}, PageKey{"", "snap-x"},
			    PageKey{"\u00e9\u2603", "id with spaces"}}) {
		std::string token = encodeNextToken(key);
		auto back = decodeNextToken(token);
		ASSERT_TRUE(back) << token;
		EXPECT_EQ(back->startTime, key.startTime);
		EXPECT_EQ(back->snapshotId, key.snapshotId);
	}
	EXPECT_FALSE(decodeNextToken(""));
	EXPECT_FALSE(decodeNextToken(encodeNextToken({"a", ""}))) << "an empty id is never a position";
}

} // namespace
} // namespace virtsnap::catalog::test
