#include "image_import.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/file_util.h"
#include "core/process.h"
#include "core/socket_probe.h"
#include "nbd_reader.h"
#include "work_dir.h"

namespace virtsnap::engine {

namespace {


// An image's bytes as a guest would read them, and which blocks may hold
// data (a block outside them reads as zeros).
class ImageSource
{
public:
	virtual ~ImageSource() = default;
	virtual uint64_t size() const = 0;
	virtual Result<std::vector<uint64_t>> dataBlocks() = 0;
	virtual Result<void> read(uint64_t offset, std::span<uint8_t> out) = 0;
};

// Every block that overlaps [begin, end), appended once, in order.
void addBlocks(std::vector<uint64_t> &blocks, uint64_t begin, uint64_t end)
{
	for (uint64_t b = begin / kBlockSize; b * kBlockSize < end; b++)
		if (blocks.empty() || blocks.back() < b)
			blocks.push_back(b);
}

class RawSource : public ImageSource
{
public:
	RawSource(int fd, uint64_t size) : fd_(fd), size_(size) {}
	uint64_t size() const override { return size_; }

	Result<std::vector<uint64_t>> dataBlocks() override
	{
		std::vector<uint64_t> blocks;
		for (off_t at = 0; uint64_t(at) < size_;) {
			off_t data = ::lseek(fd_, at, SEEK_DATA);
			if (data < 0 && errno == ENXIO)
				break; // only a hole is left
			if (data < 0) { // no SEEK_DATA here (a device): every block
				blocks.clear();
				addBlocks(blocks, 0, size_);
				break;
			}
			off_t hole = ::lseek(fd_, data, SEEK_HOLE);
			if (hole < 0)
				hole = off_t(size_);
			addBlocks(blocks, uint64_t(data), uint64_t(hole));
			at = hole;
		}
		return blocks;
	}

	Result<void> read(uint64_t offset, std::span<uint8_t> out) override { return preadAll(fd_, out, offset); }

private:
	int fd_;
	uint64_t size_;
};

// A qcow2 exported by qemu-nbd on a private socket.
class QcowSource : public ImageSource
{
public:
	static Result<std::unique_ptr<QcowSource>> open(int fd, std::chrono::milliseconds answerTimeout);
	~QcowSource() override
	{
		reader_.reset();
		if (server_)
			server_->stop(std::chrono::seconds(5));
	}
	uint64_t size() const override { return reader_->size(); }

	Result<std::vector<uint64_t>> dataBlocks() override
	{
		std::vector<uint64_t> blocks;
		VS_TRY(reader_->extents("base:allocation", [&](uint64_t offset, uint64_t length, uint32_t flags) {
			if (!(flags & NbdReader::kStateZero))
				addBlocks(blocks, offset, offset + length);
		}));
		return blocks;
	}

	// One read at a time, driven to its end: an import's speed is the
	// store's, not the local image's.
	Result<void> read(uint64_t offset, std::span<uint8_t> out) override
	{
		std::optional<Result<void>> done;
		VS_TRY(reader_->startRead(out, offset, [&](Result<void> r) { done = std::move(r); }));
		while (!done)
			VS_TRY(reader_->poll(-1, 1000));
		return *done;
	}

private:
	std::unique_ptr<WorkDir> work_;
	std::optional<Process> server_;
	std::unique_ptr<NbdReader> reader_;
};

// qemu-nbd would open a backing or data file by the name the image gives,
// as us: a caller could name a file only we may read. Such images are
// refused; a flattened copy (qemu-img convert) imports.
Result<void> refuseExternalFiles(int fd)
{
	VS_ASSIGN(std::string info, runProgram({"qemu-img", "info", "--output=json", "-U", "-f", "qcow2", heldOpenPath(fd)},
					       errc::kInvalidParameterValue, {fd}));
	if (info.find("\"backing-filename\"") != std::string::npos || info.find("\"data-file\"") != std::string::npos)
		return fail(errc::kInvalidParameterValue,
			    "the qcow2 image has a backing or data file; import a flattened copy (qemu-img convert)");
	return {};
}

Result<std::unique_ptr<QcowSource>> QcowSource::open(int fd, std::chrono::milliseconds answerTimeout)
{
	VS_TRY(refuseExternalFiles(fd));
	auto s = std::make_unique<QcowSource>();
	VS_ASSIGN(s->work_, WorkDir::create());
	std::string socket = (s->work_->path() / "image.sock").string();
	SpawnOptions opts;
	opts.out = Stdio::null();
	opts.err = Stdio::null();
	opts.ownProcessGroup = true;
	opts.dieWithParent = true;
	opts.keepFds = {fd};
	// --persistent: the probe below is a client, and without it qemu-nbd
	// exits when its first client leaves. It is stopped with this source.
	VS_ASSIGN(Process p, Process::spawn({"qemu-nbd", "--read-only", "--persistent", "--format=qcow2",
					     "--export-name=image", "--socket=" + socket, heldOpenPath(fd)},
					    opts));
	s->server_.emplace(std::move(p));
	// qemu-nbd listens once it has opened the image.
	auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(30);
	while (!socketAnswers(socket)) {
		if (s->server_->hasExited())
			return fail(errc::kInvalidParameterValue, "qemu-nbd could not open the image as qcow2");
		if (std::chrono::steady_clock::now() > limit)
			return fail(errc::kIo, "qemu-nbd did not export the image within 30 s");
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
	hypervisor::DiskExport exp{"the image", socket, "image", 0, "", answerTimeout};
	VS_ASSIGN(s->reader_, NbdReader::open(exp, {"base:allocation"}, "qemu-nbd"));
	return s;
}

Result<std::string> formatOf(int fd, const std::string &asked)
{
	if (!asked.empty() && asked != "raw" && asked != "qcow2")
		return fail(errc::kInvalidParameterValue, "--format must be raw or qcow2");
	if (!asked.empty())
		return asked;
	uint8_t magic[4] = {};
	ssize_t n = ::pread(fd, magic, sizeof(magic), 0);
	return n == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0 ? "qcow2" : "raw";
}

Result<std::unique_ptr<ImageSource>> openSource(int fd, const std::string &format,
						std::chrono::milliseconds answerTimeout)
{
	if (format == "qcow2") {
		VS_ASSIGN(auto s, QcowSource::open(fd, answerTimeout));
		return std::unique_ptr<ImageSource>(std::move(s));
	}
	struct stat st;
	if (::fstat(fd, &st) != 0)
		return fail(errc::kIo, std::string("cannot stat the image: ") + std::strerror(errno));
	uint64_t size = S_ISBLK(st.st_mode) ? uint64_t(::lseek(fd, 0, SEEK_END)) : uint64_t(st.st_size);
	return std::unique_ptr<ImageSource>(std::make_unique<RawSource>(fd, size));
}

// Puts every block of `blocks` that does not read as zeros, a batch of
// kBatch at a time (one pack's worth); returns their checksums in block
// order.
Result<std::vector<crypto::Digest>> putBlocks(store::Store &store, BlockWrites &writes, ImageSource &source,
					      const std::vector<uint64_t> &blocks, const std::string &snapshotId,
					      const ProgressFn &progress)
{
	constexpr size_t kBatch = 64; // 32 MiB
	std::vector<crypto::Digest> sums;
	std::vector<Bytes> buffers(kBatch, Bytes(kBlockSize));
	std::vector<BlockPut> batch;
	for (size_t i = 0; i < blocks.size(); i++) {
		Bytes &block = buffers[batch.size()];
		uint64_t offset = blocks[i] * kBlockSize;
		uint64_t length = std::min<uint64_t>(kBlockSize, source.size() - offset);
		std::fill(block.begin() + length, block.end(), 0); // a last partial block, padded
		VS_TRY(source.read(offset, std::span(block).first(length)));
		if (!isAllZero(block)) {
			crypto::Digest sum = crypto::sha256(block);
			batch.push_back({blocks[i], block, crypto::base64(sum)});
			sums.push_back(sum);
		}
		if (batch.size() == kBatch || (i + 1 == blocks.size() && !batch.empty())) {
			VS_TRY(writes.putBlocks(store, snapshotId, batch, std::chrono::system_clock::now()));
			batch.clear();
		}
		if (progress)
			progress(i + 1, blocks.size());
	}
	return sums;
}

} // namespace

Result<ImportOutcome> importImage(store::Store &store, BlockWrites &writes, const ImportRequest &request)
{
	VS_ASSIGN(std::string format, formatOf(request.fd, request.format));
	if (format == "qcow2" && !request.qcow2Refused.empty())
		return fail(errc::kAccessDenied, request.qcow2Refused);
	VS_ASSIGN(auto source, openSource(request.fd, format, request.answerTimeout));
	if (source->size() == 0)
		return fail(errc::kInvalidParameterValue, "the image is empty");
	StartRequest start = request.start;
	uint64_t needed = (source->size() + kGiB - 1) / kGiB;
	if (start.volumeSizeGiB == 0)
		start.volumeSizeGiB = needed;
	if (start.volumeSizeGiB < needed)
		return fail(errc::kInvalidParameterValue, "--volume-size " + std::to_string(start.volumeSizeGiB) +
								  " GiB is smaller than the image (" +
								  std::to_string(source->size()) + " bytes)");
	VS_ASSIGN(std::vector<uint64_t> blocks, source->dataBlocks());
	ImportOutcome out;
	VS_ASSIGN(out.write, writes.start(store, start, std::chrono::system_clock::now()));
	if (request.started)
		VS_TRY(request.started(out.write));

	auto written = putBlocks(store, writes, *source, blocks, out.write.snapshotId, request.progress);
	if (!written) {
		(void)writes.abandon(out.write.snapshotId, written.error().toString()); // the error says more
		return std::unexpected(written.error());
	}
	out.blocksPut = written->size();
	VS_ASSIGN(out.outcome, writes.complete(store, out.write.snapshotId, written->size(), linearAggregate(*written),
					       std::chrono::system_clock::now()));
	return out;
}

} // namespace virtsnap::engine
