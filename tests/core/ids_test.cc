// Resource ids: their exact shape (scripts and the EC2-style API match on
// it), uniqueness, and the stability of volume ids, which are persisted in
// every manifest and so may never change from one version to the next.
#include <algorithm>
#include <cctype>
#include <set>

#include <gtest/gtest.h>

#include "core/ids.h"
#include "crypto/crypto.h"
#include "crypto/resource_ids.h"
#include "tests/support/core_test_util.h"

namespace virtsnap::core::test {
namespace {

using virtsnap::test::asBytes;
using virtsnap::test::describe;

bool lowerHex(std::string_view s)
{
	return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

TEST(IdsTest, NewSnapshotIdFormatAndUniqueness)
{
	std::set<std::string> seen;
	std::set<char> firstDigits;
	for (int i = 0; i < 10000; i++) {
		auto id = newResourceId("snap-");
		ASSERT_TRUE(id) << describe(id);
		ASSERT_EQ(id->size(), 5u + 17u) << *id;
		ASSERT_EQ(id->substr(0, 5), "snap-") << *id;
		ASSERT_TRUE(lowerHex(id->substr(5))) << *id;
		ASSERT_TRUE(isSnapshotId(*id)) << *id;
		ASSERT_TRUE(checkSnapshotId(*id)) << *id;
		ASSERT_TRUE(seen.insert(*id).second) << "duplicate " << *id;
		firstDigits.insert((*id)[5]);
	}
	// Random, not a counter: every leading digit shows up in 10000 draws.
	EXPECT_EQ(firstDigits.size(), 16u);
}

TEST(IdsTest, VolumeIdIsStableAndPerDisk)
{
	std::string a = volumeIdFor("uuid:5f0c6e8a-0d7e-4b0e-9a55-0123456789ab", "vda");
	EXPECT_EQ(a, volumeIdFor("uuid:5f0c6e8a-0d7e-4b0e-9a55-0123456789ab", "vda"));
	EXPECT_TRUE(isVolumeId(a)) << a;
	EXPECT_EQ(a.size(), 4u + 17u);
	EXPECT_EQ(a.substr(0, 4), "vol-");
	EXPECT_TRUE(lowerHex(a.substr(4)));

	std::set<std::string> ids = {
		a,
		volumeIdFor("uuid:5f0c6e8a-0d7e-4b0e-9a55-0123456789ab", "vdb"),
		volumeIdFor("uuid:5f0c6e8a-0d7e-4b0e-9a55-0123456789ac", "vda"),
		volumeIdFor("name:web-01", "vda"),
		volumeIdFor("name:web-02", "vda"),
		volumeIdFor("socket:/run/qemu/web-01.qmp", "vda"),
		volumeIdFor("name:web-01", "virtio-disk0"),
		volumeIdFor("", ""),
	};
	EXPECT_EQ(ids.size(), 8u);
	// The instance/disk boundary matters: moving a character across it
	// gives another volume.
	EXPECT_NE(volumeIdFor("name:ab", "c"), volumeIdFor("name:a", "bc"));
}

TEST(IdsTest, VolumeIdDerivationIsPinned)
{
	// Recomputed independently: the first 17 hex digits of SHA-256 of
	// "virtsnap-volume\n" len(instance) ":" instance len(disk) ":" disk.
	// A change here would orphan every existing snapshot's volume.
	for (auto [instance, disk] : {std::pair<std::string, std::string>{"name:vm", "vda"},
				      {"uuid:00000000-0000-0000-0000-000000000001", "scsi0-0-0-0"}}) {
		std::string input = "virtsnap-volume\n" + std::to_string(instance.size()) + ":" + instance +
				    std::to_string(disk.size()) + ":" + disk;
		std::string expected = "vol-" + toHex(crypto::sha256(asBytes(input))).substr(0, 17);
		EXPECT_EQ(volumeIdFor(instance, disk), expected);
	}
}

TEST(IdsTest, IsSnapshotIdRejectsMalformedIds)
{
	EXPECT_TRUE(isSnapshotId("snap-0123456789abcdef0"));
	for (const char *bad : {
		     "snap-0123456789ABCDEF0", // uppercase
		     "snap-0123456789abcdeF0",
		     "SNAP-0123456789abcdef0",
		     "snap-0123456789abcdef",   // 16 digits
		     "snap-0123456789abcdef01", // 18 digits
		     "snap-",
		     "",
		     "snap0123456789abcdef01", // no dash
		     "snp-0123456789abcdef01",
		     "vol-0123456789abcdef0", // another resource
		     "ami-0123456789abcdef0",
		     " snap-0123456789abcdef0",
		     "snap-0123456789abcdef0 ",
		     "snap-0123456789abcdeg0", // not hex
		     "snap-0123456789abcde-0",
		     "snap-../../etc/passwd0",
	     }) {
		EXPECT_FALSE(isSnapshotId(bad)) << bad;
		auto r = checkSnapshotId(bad);
		ASSERT_FALSE(r) << bad;
		EXPECT_EQ(r.error().code, errc::kSnapshotIdMalformed) << bad;
	}
	EXPECT_FALSE(isSnapshotId(std::string_view("snap-0123456789abcde\0f", 22)));
	EXPECT_FALSE(isVolumeId("snap-0123456789abcdef0"));
	EXPECT_FALSE(isVolumeId("vol-0123456789ABCDEF0"));
}

TEST(IdsTest, PolicyIdsAreMintedAndCheckedLikeTheOthers)
{
	auto id = newResourceId("policy-");
	ASSERT_TRUE(id) << describe(id);
	EXPECT_EQ(id->size(), 7u + 17u) << *id;
	EXPECT_TRUE(isPolicyId(*id)) << *id;
	EXPECT_TRUE(isPolicyId("policy-0123456789abcdef0"));
	for (const char *bad : {"policy-0123456789ABCDEF0", "policy-0123456789abcdef", "policy-", "snap-0123456789abcdef0",
				"policy-0123456789abcdef0 ", "policy-../../etc/passw"})
		EXPECT_FALSE(isPolicyId(bad)) << bad;
}

TEST(IdsTest, IsoTimeNowShape)
{
	std::string t = isoTimeNow();
	// YYYY-MM-DDTHH:MM:SS.mmmZ, digit for digit.
	const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ";
	ASSERT_EQ(t.size(), shape.size()) << t;
	for (size_t i = 0; i < shape.size(); i++) {
		if (shape[i] == 'd') {
			EXPECT_TRUE(std::isdigit((unsigned char)t[i])) << t << " at " << i;
		} else {
			EXPECT_EQ(t[i], shape[i]) << t << " at " << i;
		}
	}
	// Lexical order is time order: what listManifests relies on.
	std::string later = isoTimeNow();
	EXPECT_LE(t, later);
}

} // namespace
} // namespace virtsnap::core::test
