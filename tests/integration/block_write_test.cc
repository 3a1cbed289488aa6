// The EBS direct APIs' write side end to end, through virtsnapd: a
// reference image put block by block with the virtsnap binary, completed
// with its LINEAR aggregate, restores bit for bit (qemu-img compare); a
// wrong checksum is refused, a wrong count ends the snapshot in error, bad
// input is one line; import-image of the same image as qcow2 restores the
// same. Checksums are worked out here with OpenSSL, never by virtsnap.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <openssl/evp.h>

#include "cli_fixture.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

namespace fs = std::filesystem;
using virtsnap::Json;

constexpr uint64_t kBlock = 512 * 1024;

std::vector<uint8_t> sha256(const std::vector<uint8_t> &data)
{
	std::vector<uint8_t> digest(EVP_MAX_MD_SIZE);
	unsigned int len = 0;
	EXPECT_EQ(EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_sha256(), nullptr), 1);
	digest.resize(len);
	return digest;
}

std::string base64(const std::vector<uint8_t> &data)
{
	std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
	out.resize(size_t(EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), data.data(), int(data.size()))));
	return out;
}

class BlockWriteTest : public CliTest
{
protected:
	BlockWriteTest() : CliTest("vs-bw") {}

	void SetUp() override
	{
		REQUIRE_TOOL("qemu-img");
		REQUIRE_TOOL("qemu-nbd");
		ASSERT_EQ(cli({"init"}).status, 0);
		daemon_ = std::make_unique<Virtsnapd>(daemonOptions(socket_));
		ASSERT_TRUE(daemon_->start());
		ASSERT_NO_FATAL_FAILURE(makeReference());
	}

	// 1 GiB, sparse: random data at the start, text across a block edge,
	// a block of zeros written as data, and the last block.
	void makeReference()
	{
		int fd = ::open(reference_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(::ftruncate(fd, off_t(kGiB)), 0);
		std::mt19937_64 rng(7);
		auto put = [&](uint64_t offset, std::vector<uint8_t> data) {
			ASSERT_EQ(::pwrite(fd, data.data(), data.size(), off_t(offset)), ssize_t(data.size()));
		};
		std::vector<uint8_t> random(3 * kBlock);
		fillRandom(rng, std::span(random.data(), random.size()));
		put(0, random);
		const std::string text = "virtsnap block-write reference line 0123456789\n";
		std::vector<uint8_t> lines(kBlock + 4096);
		for (size_t i = 0; i < lines.size(); i++)
			lines[i] = uint8_t(text[i % text.size()]);
		put(100 * kBlock - 2048, lines);
		put(300 * kBlock, std::vector<uint8_t>(kBlock, 0));
		std::vector<uint8_t> last(kBlock);
		fillRandom(rng, std::span(last.data(), last.size()));
		put(kGiB - kBlock, last);
		::close(fd);
	}

	std::vector<uint8_t> readBlock(uint64_t block)
	{
		std::vector<uint8_t> out(kBlock);
		int fd = ::open(reference_.c_str(), O_RDONLY);
		EXPECT_EQ(::pread(fd, out.data(), kBlock, off_t(block * kBlock)), ssize_t(kBlock));
		::close(fd);
		return out;
	}

	// The reference's blocks that are not all zeros.
	std::map<uint64_t, std::vector<uint8_t>> dataBlocks()
	{
		std::map<uint64_t, std::vector<uint8_t>> out;
		for (uint64_t b = 0; b < kGiB / kBlock; b++) {
			auto data = readBlock(b);
			if (std::any_of(data.begin(), data.end(), [](uint8_t x) { return x != 0; }))
				out[b] = std::move(data);
		}
		return out;
	}

	CliResult putBlock(const std::string &id, uint64_t block, const std::vector<uint8_t> &data,
			   const std::string &checksum, const std::string &length = "524288")
	{
		std::string file = tmp_.file("block-" + std::to_string(block));
		int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
		EXPECT_EQ(::write(fd, data.data(), data.size()), ssize_t(data.size()));
		::close(fd);
		return cli({"put-snapshot-block", "--snapshot-id", id, "--block-index", std::to_string(block),
			    "--block-data", file, "--data-length", length, "--checksum", checksum,
			    "--checksum-algorithm", "SHA256"},
			   socket_);
	}

	std::string start()
	{
		CliResult r = cli({"start-snapshot", "--volume-size", "1", "--description", "by blocks"}, socket_);
		EXPECT_EQ(r.status, 0) << r.err;
		EXPECT_EQ(r.json().getString("Status"), "pending");
		EXPECT_EQ(r.json().getInt("BlockSize"), int64_t(kBlock));
		return r.json().getString("SnapshotId").value_or("");
	}

	std::string stateOf(const std::string &id)
	{
		CliResult r = cli({"describe-snapshots", "--snapshot-id", id}, socket_);
		EXPECT_EQ(r.status, 0) << r.err;
		Json rows = r.json().get("Snapshots");
		return r.status == 0 && rows.size() == 1 ? rows.at(0).getString("State").value_or("") : "";
	}

	void expectOneLineError(const CliResult &r, const std::string &code, const std::string &mentions)
	{
		EXPECT_NE(r.status, 0);
		EXPECT_NE(r.err.find(code), std::string::npos) << r.err;
		EXPECT_NE(r.err.find(mentions), std::string::npos) << r.err;
		EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
	}

	// The daemon served every call: alive, it answers on its socket, and
	// the CLI does not run commands itself then.
	void expectDaemonServed()
	{
		int status = 0;
		EXPECT_EQ(::waitpid(daemon_->pid(), &status, WNOHANG), 0) << "virtsnapd exited";
	}

	void expectRestores(const std::string &id, const std::string &name)
	{
		std::string target = tmp_.file(name);
		CliResult r = cli({"create-volume", "--snapshot-id", id, "--target", target, "--format", "raw"}, socket_);
		ASSERT_EQ(r.status, 0) << r.err;
		EXPECT_TRUE(sameImage(target, "raw", reference_));
	}

	std::string socket_ = tmp_.file("virtsnapd.sock");
	std::string reference_ = tmp_.file("reference.raw");
	std::unique_ptr<Virtsnapd> daemon_;
};

TEST_F(BlockWriteTest, ImportByBlocksWithTheAggregateRestoresBitExact)
{
	auto blocks = dataBlocks();
	ASSERT_EQ(blocks.size(), 3u + 3u + 1u); // the text spans 3 blocks; the zero block is not data
	std::string id = start();
	EXPECT_EQ(stateOf(id), "pending");

	// A checksum of other data stores nothing.
	auto first = blocks.begin();
	expectOneLineError(putBlock(id, first->first, first->second, base64(sha256(std::next(first)->second))),
			   "InvalidParameterValue", "does not match");
	std::vector<uint8_t> digests;
	for (const auto &[b, data] : blocks) {
		auto digest = sha256(data);
		CliResult r = putBlock(id, b, data, base64(digest));
		ASSERT_EQ(r.status, 0) << r.err;
		EXPECT_EQ(r.json().getString("Checksum"), base64(digest));
		digests.insert(digests.end(), digest.begin(), digest.end());
	}
	// gc with no grace, while the blocks' chunks are in no manifest: the
	// daemon's gc must keep them (complete would find them gone).
	CliResult gc = cli({"gc", "--grace-seconds", "0"}, socket_);
	ASSERT_EQ(gc.status, 0) << gc.err;
	// Tags given while it is pending reach the completed snapshot.
	ASSERT_EQ(cli({"create-tags", "--resource", id, "--tag", "late=1"}, socket_).status, 0);
	CliResult done = cli({"complete-snapshot", "--snapshot-id", id, "--changed-blocks-count",
			      std::to_string(blocks.size()), "--checksum", base64(sha256(digests)),
			      "--checksum-algorithm", "SHA256", "--checksum-aggregation-method", "LINEAR"},
			     socket_);
	ASSERT_EQ(done.status, 0) << done.err;
	EXPECT_EQ(done.json().getString("Status"), "completed");
	EXPECT_EQ(stateOf(id), "completed");
	Json tags = cli({"describe-snapshots", "--snapshot-id", id}, socket_).json().get("Snapshots").at(0).get("Tags");
	EXPECT_NE(tags.dump().find("\"late\""), std::string::npos) << tags.dump();
	ASSERT_NO_FATAL_FAILURE(expectRestores(id, "by-blocks.raw"));

	// import-image of the same image as qcow2: the same volume.
	std::string qcow = tmp_.file("reference.qcow2");
	ASSERT_EQ(runCommand({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", reference_, qcow}), 0);
	CliResult imported = cli({"import-image", "--file", qcow, "--description", "imported"}, socket_);
	ASSERT_EQ(imported.status, 0) << imported.err;
	EXPECT_EQ(imported.json().getString("State"), "completed");
	ASSERT_NO_FATAL_FAILURE(expectRestores(imported.json().getString("SnapshotId").value_or(""), "imported.raw"));
	expectDaemonServed();
}

TEST_F(BlockWriteTest, AWrongCountEndsInErrorAndBadInputIsOneLine)
{
	auto blocks = dataBlocks();
	std::string id = start();
	// A client token retried gets its snapshot again; with other options
	// it is refused.
	std::vector<std::string> tokened = {"start-snapshot", "--volume-size", "1", "--client-token", "t-1"};
	CliResult once = cli(tokened, socket_), twice = cli(tokened, socket_);
	ASSERT_EQ(once.status, 0) << once.err;
	ASSERT_EQ(twice.status, 0) << twice.err;
	EXPECT_EQ(once.json().getString("SnapshotId"), twice.json().getString("SnapshotId"));
	expectOneLineError(cli({"start-snapshot", "--volume-size", "2", "--client-token", "t-1"}, socket_),
			   "IdempotentParameterMismatch", "t-1");
	expectOneLineError(cli({"start-snapshot", "--volume-size", "1", "--timeout", "5"}, socket_),
			   "InvalidParameterValue", "10 to 4320");
	const auto &[b, data] = *blocks.begin();
	std::string sum = base64(sha256(data));
	expectOneLineError(putBlock(id, kGiB / kBlock, data, sum), "InvalidParameterValue", "out of range");
	expectOneLineError(putBlock(id, b, data, sum, "4096"), "InvalidParameterValue", "--data-length");
	expectOneLineError(putBlock("snap-00000000000000000", b, data, sum), "InvalidSnapshot.NotFound",
			   "snap-00000000000000000");
	expectOneLineError(putBlock("snap-XYZ", b, data, sum), "InvalidSnapshotID.Malformed", "snap-XYZ");
	// A FIFO with no writer is refused at once, not waited on by a
	// daemon thread.
	const std::string fifo = tmp_.file("block-fifo");
	ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
	expectOneLineError(cli({"put-snapshot-block", "--snapshot-id", id, "--block-index", std::to_string(b),
				"--block-data", fifo, "--data-length", "524288", "--checksum", sum,
				"--checksum-algorithm", "SHA256"},
			       socket_),
			   "InvalidParameterValue", "not a regular file");
	ASSERT_EQ(putBlock(id, b, data, sum).status, 0);
	// A catalog rebuilt from the manifests still shows it: no manifest
	// names it yet, the state directory does.
	CliResult rebuilt = cli({"catalog", "rebuild"}, socket_);
	ASSERT_EQ(rebuilt.status, 0) << rebuilt.err;
	EXPECT_EQ(stateOf(id), "pending");

	CliResult done = cli({"complete-snapshot", "--snapshot-id", id, "--changed-blocks-count", "2"}, socket_);
	EXPECT_NE(done.status, 0);
	EXPECT_EQ(done.json().getString("Status"), "error");
	EXPECT_NE(done.json().getString("StateMessage").value_or("").find("--changed-blocks-count 2"), std::string::npos)
		<< done.out;
	EXPECT_EQ(stateOf(id), "error");
	expectOneLineError(putBlock(id, b, data, sum), "IncorrectState", "error");
	// Deleted, it stays deleted: a catalog rebuilt later does not bring
	// it back from the state directory.
	CliResult gone = cli({"delete-snapshot", "--snapshot-id", id}, socket_);
	ASSERT_EQ(gone.status, 0) << gone.err;
	ASSERT_EQ(cli({"catalog", "rebuild"}, socket_).status, 0);
	expectOneLineError(cli({"describe-snapshots", "--snapshot-id", id}, socket_), "InvalidSnapshot.NotFound", id);

	// A delete while pending takes effect at completion, as for a capture.
	std::string doomed = start();
	ASSERT_EQ(putBlock(doomed, b, data, sum).status, 0);
	CliResult deleted = cli({"delete-snapshot", "--snapshot-id", doomed}, socket_);
	ASSERT_EQ(deleted.status, 0) << deleted.err;
	EXPECT_EQ(deleted.json().getBool("DeleteOnCompletion"), true);
	CliResult sealed = cli({"complete-snapshot", "--snapshot-id", doomed, "--changed-blocks-count", "1"}, socket_);
	ASSERT_EQ(sealed.status, 0) << sealed.err;
	expectOneLineError(cli({"list-snapshot-blocks", "--snapshot-id", doomed}, socket_), "InvalidSnapshot.NotFound",
			   doomed);
	expectDaemonServed();
}

// Time is moved on by rewriting when the last put was (the state
// directory's record of it): virtsnapd then finds the snapshot past its
// timeout, shows it in error, and gc reclaims its data.
TEST_F(BlockWriteTest, ATimedOutWriteEndsInErrorAndGcReclaimsItsData)
{
	auto blocks = dataBlocks();
	std::string id = start();
	const auto &[b, data] = *blocks.begin();
	ASSERT_EQ(putBlock(id, b, data, base64(sha256(data))).status, 0);
	CliResult kept = cli({"gc", "--grace-seconds", "0"}, socket_);
	ASSERT_EQ(kept.status, 0) << kept.err;
	EXPECT_EQ(kept.json().getInt("PacksRemoved"), 0);

	fs::path activity = fs::path(storeDir_) / "block-writes" / id / "activity";
	ASSERT_TRUE(fs::exists(activity));
	{
		std::ofstream(activity) << "1000000000"; // 2001
	}
	EXPECT_EQ(stateOf(id), "error");
	CliResult row = cli({"describe-snapshots", "--snapshot-id", id}, socket_);
	EXPECT_NE(row.json().get("Snapshots").at(0).getString("StateMessage").value_or("").find("timeout of 60 minutes"),
		  std::string::npos)
		<< row.out;
	CliResult swept = cli({"gc", "--grace-seconds", "0"}, socket_);
	ASSERT_EQ(swept.status, 0) << swept.err;
	EXPECT_EQ(swept.json().getInt("PacksRemoved"), 1);
	expectOneLineError(cli({"complete-snapshot", "--snapshot-id", id, "--changed-blocks-count", "1"}, socket_),
			   "IncorrectState", "error");
	expectDaemonServed();
}

} // namespace
} // namespace virtsnap::test
