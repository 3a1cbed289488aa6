#include "snapshot_engine.h"

#include <stdlib.h>

#include "core/ids.h"
#include "disk_copier.h"
#include "hypervisor/qemu_driver.h"

namespace virtsnap::engine {

namespace {

// Where the previous snapshot stands for this disk, and so whether the new
// one can read only what changed.
struct Plan {
	const store::Manifest *parent = nullptr;
	std::string reason; // why full, when there is no parent
	std::vector<std::string> obsoleteBitmaps;
};

bool isOurBitmap(const std::string &name)
{
	return isSnapshotId(name);
}

Plan planCapture(const std::vector<store::Manifest> &history, const hypervisor::DiskInfo &disk)
{
	Plan plan;
	const store::Manifest *latest = history.empty() ? nullptr : &history.back();
	for (const hypervisor::BitmapInfo &b : disk.bitmaps)
		if (isOurBitmap(b.name) && (!latest || b.name != latest->bitmapName))
			plan.obsoleteBitmaps.push_back(b.name);
	if (!latest) {
		plan.reason = "first snapshot of the volume";
		return plan;
	}
	const hypervisor::BitmapInfo *bm = disk.bitmap(latest->bitmapName);
	if (!bm)
		plan.reason = "the dirty bitmap of " + latest->snapshotId +
			      " is missing on the disk (QEMU restarted, or the bitmap was removed)";
	else if (bm->inconsistent)
		plan.reason = "the dirty bitmap of " + latest->snapshotId + " is inconsistent (QEMU exited uncleanly)";
	else if (!bm->recording || bm->busy)
		plan.reason = "the dirty bitmap of " + latest->snapshotId + " is disabled or in use";
	else if (bm->granularity == 0 || latest->chunkSize % bm->granularity != 0)
		plan.reason = "the dirty bitmap of " + latest->snapshotId + " has a granularity that does not divide the chunk size";
	else if (latest->volumeSize != disk.size)
		plan.reason = "the volume changed size since " + latest->snapshotId;
	else
		plan.parent = latest;
	// An unusable bitmap of the latest snapshot is obsolete too.
	if (!plan.parent && bm)
		plan.obsoleteBitmaps.push_back(bm->name);
	return plan;
}

Result<std::filesystem::path> makeWorkDir()
{
	// Short, private, and where QEMU can create its NBD socket: unix
	// socket paths are limited to 108 bytes, store paths are not.
	char path[] = "/tmp/virtsnap-XXXXXX";
	if (!::mkdtemp(path))
		return failErrno("create a work directory in /tmp", errno);
	return std::filesystem::path(path);
}

struct WorkDir {
	std::filesystem::path path;
	~WorkDir()
	{
		std::error_code ec;
		std::filesystem::remove_all(path, ec);
	}
};

} // namespace

Result<store::Manifest> createSnapshot(store::Store &store, const SnapshotRequest &request)
{
	auto driver = hypervisor::QemuDriver::connect(request.qmpSocket);
	if (!driver)
		return std::unexpected(driver.error());
	auto instance = (*driver)->instance();
	if (!instance)
		return std::unexpected(instance.error());
	auto disk = (*driver)->disk(request.diskId);
	if (!disk)
		return std::unexpected(disk.error());

	store::Manifest m;
	auto snapshotId = newSnapshotId();
	if (!snapshotId)
		return std::unexpected(snapshotId.error());
	m.snapshotId = *snapshotId;
	m.volumeId = volumeIdFor(instance->key, disk->diskId);
	m.volume = {instance->key, instance->name, disk->diskId, disk->format};
	m.description = request.description;
	m.tags = request.tags;
	m.bitmapName = m.snapshotId;

	auto all = store.listManifests();
	if (!all)
		return std::unexpected(all.error());
	std::vector<store::Manifest> history;
	for (store::Manifest &x : *all)
		if (x.volumeId == m.volumeId)
			history.push_back(std::move(x));
	Plan plan = planCapture(history, *disk);
	uint32_t chunkSize = plan.parent ? plan.parent->chunkSize : store.chunkSize();

	auto codec = store.newCodec();
	std::optional<store::SnapshotIndex> index;
	if (plan.parent) {
		auto loaded = store::SnapshotIndex::load(store, *codec, *plan.parent);
		if (!loaded)
			return std::unexpected(loaded.error());
		index.emplace(std::move(*loaded));
		m.parentSnapshotId = plan.parent->snapshotId;
		m.captureMode = "incremental";
	} else {
		index.emplace(disk->size, chunkSize);
		m.captureMode = "full";
		m.captureReason = plan.reason;
	}

	auto workDir = makeWorkDir();
	if (!workDir)
		return std::unexpected(workDir.error());
	WorkDir cleanup{*workDir};

	hypervisor::CaptureRequest req;
	req.diskId = disk->diskId;
	req.newBitmap = m.bitmapName;
	req.parentBitmap = plan.parent ? plan.parent->bitmapName : "";
	req.granularity = chunkSize;
	req.persistent = disk->format == "qcow2";
	req.obsoleteBitmaps = plan.obsoleteBitmaps;

	m.startTime = isoTimeNow();
	auto capture = (*driver)->capture({req}, *workDir, nullptr);
	if (!capture)
		return std::unexpected(capture.error());

	auto writer = store.newWriter();
	auto copied = copyDisk((*capture)->exports()[0], store, *writer, *index, request.progress);
	if (!copied)
		return std::unexpected(copied.error());
	uint64_t dataChunksNew = writer->chunksNew();
	uint64_t dataChunksReused = writer->chunksReused();
	VS_TRY(index->save(*writer, *codec, m));
	VS_TRY(writer->commit());

	m.completionTime = isoTimeNow();
	m.stats.bytesRead = copied->bytesRead;
	m.stats.bytesAdded = writer->bytesAdded();
	m.stats.chunksNew = dataChunksNew;
	m.stats.chunksReused = dataChunksReused;
	m.stats.zeroChunks = copied->zeroChunks;
	VS_TRY(store.putManifest(m));

	// Durable: only now may the parent's bitmap go. Failing to drop it
	// costs memory in QEMU, not correctness, so the snapshot stands.
	(void)(*capture)->commit();
	return m;
}

Result<void> deleteSnapshot(store::Store &store, const std::string &snapshotId)
{
	VS_TRY(checkSnapshotId(snapshotId));
	return store.deleteManifest(snapshotId);
}

} // namespace virtsnap::engine
