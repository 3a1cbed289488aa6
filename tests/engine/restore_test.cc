// create-volume's qcow2 path as virtsnapd runs it: after a thread acted as
// a caller (setfsuid: core/acting_as.h) the process is not dumpable, and
// under the systemd unit its children lack CAP_SYS_PTRACE, so they may
// not open /proc/OURPID/fd/N. The restore must still work, bit-exact: its
// helper programs open the files they were handed as /proc/self/fd/N.
// And the product codes a restored file carries to the volume whatever
// disk attaches it next (engine/image_product_codes.h).
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "core/process.h"
#include "core/product_code_mark.h"
#include "engine/image_product_codes.h"
#include "engine/restore.h"
#include "tests/engine/clocked_store.h"

namespace virtsnap::engine {
namespace {

using store::test::describe;

TEST_F(ClockedStoreTest, AQcow2RestoreNeedsNoLookIntoANonDumpableDaemon)
{
	if (::geteuid() != 0)
		GTEST_SKIP() << "needs root to drop CAP_SYS_PTRACE from the children";
	// For every child from here on, as virtsnapd's unit has it; and this
	// process not dumpable, as after any ActingAs.
	ASSERT_EQ(::prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0), 0) << std::strerror(errno);
	ASSERT_EQ(::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), 0);

	fs::path qcow = root_ / "restored.qcow2";
	auto restored = createVolume(*store_, {id_, qcow, "qcow2", {}, ""});
	ASSERT_TRUE(restored) << describe(restored);
	fs::path raw = root_ / "restored.raw";
	auto converted = runProgram({"qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow.string(), raw.string()});
	ASSERT_TRUE(converted) << describe(converted);
	std::ifstream in(raw, std::ios::binary);
	EXPECT_EQ(Bytes(std::istreambuf_iterator<char>(in), {}), disk(1));
}

// A raw restore (no helper program: it runs after the test above too).
TEST_F(ClockedStoreTest, ARestoredFileCarriesItsSnapshotsProductCodesToTheVolumeThatAttachesIt)
{
	const std::vector<ProductCode> codes{{"abc123", "marketplace"}, {"dp9", "devpay"}};
	auto m = store_->getManifest(id_);
	ASSERT_TRUE(m) << describe(m);
	m->productCodes = codes;
	ASSERT_TRUE(store_->putManifest(*m, true));
	std::vector<std::string> warnings;
	auto warn = [&](const std::string &w) { warnings.push_back(w); };

	fs::path coded = root_ / "coded.raw";
	auto restored = createVolume(*store_, {id_, coded, "raw", {}, "", std::nullopt, warn});
	ASSERT_TRUE(restored) << describe(restored);
	auto mark = readProductCodeMark(coded);
	ASSERT_TRUE(mark) << describe(mark);
	EXPECT_EQ(*mark, codes);
	EXPECT_TRUE(warnings.empty());

	// Attached as some other disk: its volume gains the codes, once.
	VolumeRecord other{"vol-0123456789abcdef0", "name:other", "other", "vdc", 0, "standard", {}, false, "",
			   {{"zz1", "marketplace"}}};
	hypervisor::DiskInfo disk;
	disk.diskId = "vdc";
	disk.filename = coded.string();
	EXPECT_TRUE(addImageProductCodes(other, disk, warn));
	EXPECT_EQ(other.productCodes,
		  (std::vector<ProductCode>{{"zz1", "marketplace"}, {"abc123", "marketplace"}, {"dp9", "devpay"}}));
	EXPECT_FALSE(addImageProductCodes(other, disk, warn)) << "nothing new";
	disk.filename = "json:{\"driver\": \"file\", \"filename\": \"" + coded.string() + "\"}";
	VolumeRecord plain{"vol-0123456789abcdef1", "name:other", "other", "vdd", 0, "standard", {}, false, "", {}};
	EXPECT_FALSE(addImageProductCodes(plain, disk, warn)) << "not a plain path";
	EXPECT_TRUE(warnings.empty());

	// A mark that is not ours: left out, with one warning.
	ASSERT_EQ(::setxattr(coded.c_str(), kProductCodeMarkAttribute, "abc:paid", 8, 0), 0) << std::strerror(errno);
	disk.filename = coded.string();
	EXPECT_FALSE(addImageProductCodes(plain, disk, warn));
	EXPECT_TRUE(plain.productCodes.empty());
	ASSERT_EQ(warnings.size(), 1u);
	EXPECT_NE(warnings[0].find("InvalidParameterValue"), std::string::npos) << warnings[0];

	// A snapshot without codes leaves no mark.
	ASSERT_NO_FATAL_FAILURE(save("snap-0123456789abcdef1", {}, 2));
	fs::path uncoded = root_ / "uncoded.raw";
	ASSERT_TRUE(createVolume(*store_, {"snap-0123456789abcdef1", uncoded, "raw", {}, "", std::nullopt, warn}));
	EXPECT_LT(::getxattr(uncoded.c_str(), kProductCodeMarkAttribute, nullptr, 0), 0);
	EXPECT_EQ(errno, ENODATA);
}

// procfs keeps no user xattrs, as a filesystem mounted without them: the
// restore goes on, and one line names the target.
TEST_F(ClockedStoreTest, AFileThatCannotKeepProductCodesIsOneWarning)
{
	UniqueFd proc(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
	ASSERT_TRUE(proc.isValid()) << std::strerror(errno);
	std::vector<std::string> warnings;
	markRestoredImage(proc.get(), "/srv/images/new.qcow2", {{"abc123", "marketplace"}},
			  [&](const std::string &w) { warnings.push_back(w); });
	ASSERT_EQ(warnings.size(), 1u);
	EXPECT_NE(warnings[0].find("/srv/images/new.qcow2"), std::string::npos) << warnings[0];
	EXPECT_NE(warnings[0].find("product codes"), std::string::npos) << warnings[0];
	EXPECT_EQ(warnings[0].find('\n'), std::string::npos) << warnings[0];
	markRestoredImage(proc.get(), "/srv/images/new.qcow2", {}, [&](const std::string &w) { warnings.push_back(w); });
	EXPECT_EQ(warnings.size(), 1u) << "no codes, nothing to keep";
}

} // namespace
} // namespace virtsnap::engine
