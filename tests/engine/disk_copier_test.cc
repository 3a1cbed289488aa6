// copyDisk (engine/disk_copier.h) against qemu-nbd exporting a sparse qcow2
// that qemu-io wrote, into a real local store: a full copy, then an
// incremental one through a persistent dirty bitmap that qemu-io's writes
// marked. Every slot's id is checked against the image's own bytes
// (qemu-img convert), and the bytes read show that only dirty slots with
// data were read: the dirty slots that became holes (a discard, written
// zeros) got the zero id from base:allocation, without a read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "core/socket_probe.h"
#include "engine/disk_copier.h"
#include "tests/engine/nbd_server_process.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine {
namespace {

using namespace std::chrono_literals;
using store::SnapshotIndex;

constexpr uint32_t kChunk = 64 * 1024;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kSize = 256 * kMiB;

// Runs a tool to its end; its reports (qemu-io's) are not the test's.
void runTool(const std::vector<std::string> &argv)
{
	int quiet = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
	ASSERT_GE(quiet, 0);
	pid_t pid = test::spawn(argv, quiet, STDERR_FILENO);
	::close(quiet);
	ASSERT_GT(pid, 0);
	int status = 0;
	ASSERT_EQ(::waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << argv[0] << " " << argv.back();
}

// qemu-nbd serving `image` read-only, with `bitmap` (if any) as
// qemu:dirty-bitmap:NAME, until the end of the scope.
class QemuNbd
{
public:
	QemuNbd(const std::string &image, const std::string &bitmap)
	{
		std::vector<std::string> argv{"qemu-nbd", "-r", "-t", "-f", "qcow2", "-x", "disk", "-k", socket_};
		if (!bitmap.empty())
			argv.insert(argv.end(), {"-B", bitmap});
		argv.push_back(image);
		server_.start(argv);
	}
	bool up() const { return server_.up(); }
	hypervisor::DiskExport disk(const std::string &bitmap) const
	{
		hypervisor::DiskExport e{"vdz", socket_, "disk", kSize, "", 10s};
		if (!bitmap.empty())
			e.dirtyBitmapContext = "qemu:dirty-bitmap:" + bitmap;
		return e;
	}

private:
	test::NbdServerProcess server_{"vs-qemu-nbd"};
	const std::string &socket_ = server_.socket();
};

class DiskCopierTest : public store::test::WithOpenStore<store::test::StoreDirTest>
{
protected:
	DiskCopierTest() : WithOpenStore(kChunk) {}

	void SetUp() override
	{
		REQUIRE_TOOL("qemu-nbd");
		REQUIRE_TOOL("qemu-img");
		REQUIRE_TOOL("qemu-io");
		WithOpenStore::SetUp();
	}

	void qemuIo(const std::vector<std::string> &commands)
	{
		std::vector<std::string> argv{"qemu-io", "-f", "qcow2", "-d", "unmap"};
		for (const std::string &c : commands)
			argv.insert(argv.end(), {"-c", c});
		argv.push_back(image_);
		runTool(argv);
	}

	Result<CopyStats> copy(const std::string &bitmap, SnapshotIndex &index)
	{
		QemuNbd server(image_, bitmap);
		EXPECT_TRUE(server.up()) << "qemu-nbd did not start";
		auto writer = store_->newWriter();
		auto copied = copyDisk(server.disk(bitmap), *store_, *writer, index, {}, {});
		if (copied) {
			auto committed = writer->commit();
			EXPECT_TRUE(committed) << committed.error().toString();
		}
		return copied;
	}

	// Every slot has the id of the image's bytes there, computed from a
	// raw copy qemu-img made.
	void expectIdsOfImage(const SnapshotIndex &index)
	{
		std::string raw = dir_.file("reference.raw");
		runTool({"qemu-img", "convert", "-f", "qcow2", "-O", "raw", image_, raw});
		int fd = ::open(raw.c_str(), O_RDONLY | O_CLOEXEC);
		ASSERT_GE(fd, 0);
		Bytes slot(kChunk);
		size_t wrong = 0;
		for (uint64_t s = 0; s < index.slots(); s++) {
			ASSERT_EQ(::pread(fd, slot.data(), kChunk, off_t(s * kChunk)), ssize_t(kChunk));
			store::ChunkId want = isAllZero(slot) ? store::kZeroChunk : codec_->idOf(slot);
			if (index.at(s) != want && wrong++ < 5)
				ADD_FAILURE() << "slot " << s << " has the wrong id";
		}
		::close(fd);
		EXPECT_EQ(wrong, 0u);
	}

	test::TempDir dir_{"vs-disk-copier"};
	std::string image_ = dir_.file("disk.qcow2");
};

TEST_F(DiskCopierTest, AnIncrementalReadsOnlyDirtySlotsWithData)
{
	runTool({"qemu-img", "create", "-q", "-f", "qcow2", image_, std::to_string(kSize)});
	qemuIo({"write -P 0x11 0 1M", "write -P 0x22 100M 3M", "write -P 0x33 200M 64K", "write -P 0x44 255M 1M"});

	SnapshotIndex full(kSize, kChunk);
	auto copied = copy("", full);
	ASSERT_TRUE(copied) << copied.error().toString();
	const uint64_t dataBytes = 5 * kMiB + 64 * 1024;
	EXPECT_EQ(copied->bytesRead, dataBytes);
	EXPECT_EQ(copied->zeroChunks, full.slots() - dataBytes / kChunk);
	expectIdsOfImage(full);

	// After the bitmap: new data in a hole, a slot of data rewritten, one
	// zeroed, a MiB discarded, and 4 KiB in a hole (a slot partly data).
	runTool({"qemu-img", "bitmap", "--add", "-g", "64K", image_, "b0"});
	qemuIo({"write -P 0x55 150M 128K", "write -P 0x66 101M 64K", "write -z 102M 64K", "discard 0 1M",
		"write -P 0x77 180M 4K"});

	SnapshotIndex next = full.copy();
	copied = copy("b0", next);
	ASSERT_TRUE(copied) << copied.error().toString();
	// 2 + 1 + 1 slots with data; the zeroed slot and the 16 discarded
	// ones are holes, not read.
	EXPECT_EQ(copied->bytesRead, 4 * uint64_t(kChunk));
	EXPECT_EQ(copied->zeroChunks, 17u);
	expectIdsOfImage(next);
}

} // namespace
} // namespace virtsnap::engine
