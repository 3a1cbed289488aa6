#include "restore.h"

#include <unistd.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "core/file_util.h"
#include "core/ids.h"
#include "core/process.h"
#include "store/snapshot_index.h"

namespace virtsnap::engine {

namespace {

// Slots a worker takes at a time.
constexpr uint64_t kBatch = 64;

// Writes every non-zero slot of `index` into `fd`, which is already sized
// (and so sparse where nothing is written).
Result<void> writeSlots(store::Store &store, const store::SnapshotIndex &index, int fd, const ProgressFn &progress)
{
	uint64_t total = 0;
	for (uint64_t s = 0; s < index.slots(); s++)
		if (!store::isZeroId(index.at(s)))
			total += index.slotLength(s);

	std::atomic<uint64_t> next{0}, done{0};
	std::mutex errorMutex;
	std::optional<Error> firstError;
	auto failed = [&] {
		std::lock_guard lock(errorMutex);
		return firstError.has_value();
	};
	auto worker = [&] {
		auto codec = store.newCodec();
		for (;;) {
			uint64_t first = next.fetch_add(kBatch);
			if (first >= index.slots() || failed())
				return;
			for (uint64_t s = first; s < std::min(first + kBatch, index.slots()); s++) {
				const store::ChunkId &id = index.at(s);
				if (store::isZeroId(id))
					continue;
				auto data = store.readChunk(*codec, id);
				Result<void> written;
				if (data && data->size() != index.slotLength(s))
					written = fail(errc::kCorrupt, "chunk " + store::idHex(id) + " has " +
									 std::to_string(data->size()) + " bytes, slot " +
									 std::to_string(s) + " needs " +
									 std::to_string(index.slotLength(s)));
				else if (data)
					written = pwriteAll(fd, *data, s * index.chunkSize());
				else
					written = std::unexpected(data.error());
				if (!written) {
					std::lock_guard lock(errorMutex);
					if (!firstError)
						firstError = written.error();
					return;
				}
				uint64_t d = done += index.slotLength(s);
				if (progress)
					progress(d, total);
			}
		}
	};
	std::vector<std::thread> threads;
	for (unsigned i = 0; i < std::max(1u, std::thread::hardware_concurrency()); i++)
		threads.emplace_back(worker);
	for (std::thread &t : threads)
		t.join();
	if (firstError)
		return std::unexpected(*firstError);
	return {};
}

} // namespace

Result<store::Manifest> createVolume(store::Store &store, const RestoreRequest &request)
{
	VS_TRY(checkSnapshotId(request.snapshotId));
	if (request.format != "qcow2" && request.format != "raw")
		return fail(errc::kInvalidParameterValue,
			    "format '" + request.format + "' is not supported (use qcow2 or raw)");
	std::error_code ec;
	if (fs::exists(request.target, ec))
		return fail(errc::kTargetExists, request.target.string() + " already exists; restore never overwrites");
	fs::path dir = request.target.parent_path().empty() ? fs::path(".") : request.target.parent_path();
	if (!fs::is_directory(dir, ec))
		return fail(errc::kInvalidParameterValue, "directory " + dir.string() + " does not exist");

	auto m = store.getManifest(request.snapshotId);
	if (!m)
		return std::unexpected(m.error());
	auto codec = store.newCodec();
	auto index = store::SnapshotIndex::load(store, *codec, *m);
	if (!index)
		return std::unexpected(index.error());

	if (request.format == "raw") {
		auto file = TempFile::create(request.target, 0644);
		if (!file)
			return std::unexpected(file.error());
		if (::ftruncate(file->fd(), off_t(m->volumeSize)) != 0)
			return failErrno("size " + file->tempPath().string(), errno);
		VS_TRY(writeSlots(store, *index, file->fd(), request.progress));
		VS_TRY(file->commit(false));
		return m;
	}

	// qcow2: the raw image is written first, then converted into an image
	// created beforehand, so the file we fsync is the one qemu-img wrote.
	auto raw = TempFile::create(request.target.string() + ".raw", 0600);
	if (!raw)
		return std::unexpected(raw.error());
	if (::ftruncate(raw->fd(), off_t(m->volumeSize)) != 0)
		return failErrno("size " + raw->tempPath().string(), errno);
	VS_TRY(writeSlots(store, *index, raw->fd(), request.progress));
	auto out = TempFile::create(request.target, 0644);
	if (!out)
		return std::unexpected(out.error());
	auto made = runProgram({"qemu-img", "create", "-q", "-f", "qcow2", out->tempPath().string(),
				std::to_string(m->volumeSize)});
	if (made)
		made = runProgram({"qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2",
				   raw->tempPath().string(), out->tempPath().string()});
	if (!made)
		return std::unexpected(made.error());
	VS_TRY(out->commit(false));
	return m;
}

} // namespace virtsnap::engine
