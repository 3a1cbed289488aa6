// create-volume's qcow2 path as virtsnapd runs it: after a thread acted as
// a caller (setfsuid: core/acting_as.h) the process is not dumpable, and
// under the systemd unit its children lack CAP_SYS_PTRACE, so they may
// not open /proc/OURPID/fd/N. The restore must still work, bit-exact: its
// helper programs open the files they were handed as /proc/self/fd/N.
#include <linux/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "core/process.h"
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

} // namespace
} // namespace virtsnap::engine
