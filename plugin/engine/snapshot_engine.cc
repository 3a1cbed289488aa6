#include "snapshot_engine.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "core/cancel.h"
#include "core/ids.h"
#include "disk_copier.h"
#include "hypervisor/qemu_driver.h"
#include "resources.h"

namespace virtsnap::engine {

namespace {

using hypervisor::DiskInfo;

// Where the previous snapshot stands for this disk, and so whether the new
// one can read only what changed.
struct Plan {
	const store::Manifest *parent = nullptr;
	std::string reason; // why full, when there is no parent
	std::vector<std::string> obsoleteBitmaps;
};

Plan planCapture(const std::vector<store::Manifest> &history, const DiskInfo &disk)
{
	Plan plan;
	const store::Manifest *latest = history.empty() ? nullptr : &history.back();
	for (const hypervisor::BitmapInfo &b : disk.bitmaps)
		if (isSnapshotId(b.name) && (!latest || b.name != latest->bitmapName))
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
		plan.reason = "the dirty bitmap of " + latest->snapshotId +
			      " has a granularity that does not divide the chunk size";
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
	const char *tmp = std::getenv("TMPDIR");
	std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/virtsnap-XXXXXX";
	if (pattern.size() > 80)
		return fail(errc::kInvalidParameterValue,
			    "TMPDIR is too long for the NBD socket path (unix sockets take 108 bytes)");
	if (!::mkdtemp(pattern.data()))
		return failErrno("create a work directory in " + pattern.substr(0, pattern.rfind('/')), errno);
	return std::filesystem::path(pattern);
}

struct WorkDir {
	std::filesystem::path path;
	~WorkDir()
	{
		std::error_code ec;
		std::filesystem::remove_all(path, ec);
	}
};

// The boot volume: the disk with the lowest bootindex, else the first.
const DiskInfo *bootDisk(const std::vector<DiskInfo> &disks)
{
	const DiskInfo *boot = nullptr;
	for (const DiskInfo &d : disks)
		if (d.bootIndex >= 0 && (!boot || d.bootIndex < boot->bootIndex))
			boot = &d;
	return boot ? boot : (disks.empty() ? nullptr : &disks.front());
}

Result<std::vector<DiskInfo>> selectDisks(hypervisor::QemuDriver &driver, const SnapshotSetRequest &request,
					  const std::string &socket)
{
	auto all = driver.disks();
	if (!all)
		return std::unexpected(all.error());
	auto known = [&](const std::string &id) {
		return std::any_of(all->begin(), all->end(),
				   [&](const DiskInfo &d) { return d.diskId == id || d.nodeName == id; });
	};
	for (const std::string &id : request.excludeDisks)
		if (!known(id))
			return std::unexpected(driver.disk(id).error());

	std::vector<DiskInfo> chosen;
	if (!request.disks.empty()) {
		for (const std::string &id : request.disks) {
			auto d = driver.disk(id);
			if (!d)
				return std::unexpected(d.error());
			chosen.push_back(*d);
		}
	} else {
		const DiskInfo *boot = bootDisk(*all);
		for (const DiskInfo &d : *all) {
			bool excluded = std::find(request.excludeDisks.begin(), request.excludeDisks.end(), d.diskId) !=
						request.excludeDisks.end() ||
					std::find(request.excludeDisks.begin(), request.excludeDisks.end(),
						  d.nodeName) != request.excludeDisks.end();
			if (excluded || (request.excludeBootVolume && boot && d.nodeName == boot->nodeName))
				continue;
			chosen.push_back(d);
		}
	}
	if (chosen.empty())
		return fail(errc::kInvalidParameterValue, "no disk of the instance at " + socket +
								  " is left to snapshot after the exclusions");
	if (chosen.size() > kMaxSetDisks)
		return fail(errc::kInvalidParameterValue, "the instance has " + std::to_string(chosen.size()) +
								  " disks; a snapshot set takes at most " +
								  std::to_string(kMaxSetDisks));
	return chosen;
}

// One disk of the set while it is being taken.
struct Member {
	DiskInfo disk;
	store::Manifest manifest;
	Plan plan;
	std::optional<store::SnapshotIndex> index;
};

} // namespace

Result<std::vector<SnapshotOutcome>> createSnapshots(store::Store &store, const SnapshotSetRequest &request)
{
	auto driver = hypervisor::QemuDriver::connect(request.qmpSocket);
	if (!driver)
		return std::unexpected(driver.error());
	auto instance = (*driver)->instance();
	if (!instance)
		return std::unexpected(instance.error());
	if (instance->status == "suspended")
		return fail(errc::kIncorrectState, "the instance at " + request.qmpSocket +
							   " is suspended (hibernated); snapshots are refused until it resumes");
	auto instanceRecord = loadInstance(store, instanceIdFor(instance->key));
	if (!instanceRecord)
		return std::unexpected(instanceRecord.error());
	if (*instanceRecord && (*instanceRecord)->hibernationEnabled)
		return fail(errc::kIncorrectState, "instance " + (*instanceRecord)->instanceId +
							   " has hibernation enabled; snapshots of it are refused");

	auto disks = selectDisks(**driver, request, request.qmpSocket);
	if (!disks)
		return std::unexpected(disks.error());

	auto all = store.listManifests();
	if (!all)
		return std::unexpected(all.error());

	std::string setId;
	if (disks->size() > 1 || request.disks.empty()) {
		auto id = newSnapshotId();
		if (!id)
			return std::unexpected(id.error());
		setId = "ss-" + id->substr(5);
	}

	auto codec = store.newCodec();
	std::vector<Member> members;
	for (const DiskInfo &disk : *disks) {
		Member m{disk, {}, {}, {}};
		auto id = newSnapshotId();
		if (!id)
			return std::unexpected(id.error());
		store::Manifest &man = m.manifest;
		man.snapshotId = *id;
		man.volumeId = volumeIdFor(instance->key, disk.diskId);
		man.volume = {instance->key, instance->name, disk.diskId, disk.format};
		man.description = request.description;
		man.name = request.name;
		man.tags = request.tags;
		man.bitmapName = man.snapshotId;
		man.snapshotSetId = setId;

		// First sight of a volume registers it; its tags may be copied.
		auto vol = loadVolume(store, man.volumeId);
		if (!vol)
			return std::unexpected(vol.error());
		VolumeRecord record = vol->value_or(VolumeRecord{man.volumeId, instance->key, instance->name,
								 disk.diskId, disk.size, "standard", {}});
		if (!*vol || record.size != disk.size || record.instanceName != instance->name) {
			record.size = disk.size;
			record.instanceName = instance->name;
			VS_TRY(saveVolume(store, record));
		}
		if (request.copyTagsFromSource)
			for (const auto &[k, v] : record.tags)
				if (std::none_of(man.tags.begin(), man.tags.end(),
						 [&](const auto &t) { return t.first == k; }))
					man.tags.emplace_back(k, v);
		members.push_back(std::move(m));
	}
	// Plans point into `history`, which must outlive them.
	std::vector<std::vector<store::Manifest>> history(members.size());
	for (size_t i = 0; i < members.size(); i++) {
		Member &m = members[i];
		for (const store::Manifest &x : *all)
			if (x.volumeId == m.manifest.volumeId)
				history[i].push_back(x);
		m.plan = planCapture(history[i], m.disk);
		if (m.plan.parent) {
			auto loaded = store::SnapshotIndex::load(store, *codec, *m.plan.parent);
			if (!loaded)
				return std::unexpected(loaded.error());
			m.index.emplace(std::move(*loaded));
			m.manifest.parentSnapshotId = m.plan.parent->snapshotId;
			m.manifest.captureMode = "incremental";
		} else {
			m.index.emplace(m.disk.size, store.chunkSize());
			m.manifest.captureMode = "full";
			m.manifest.captureReason = m.plan.reason;
		}
	}

	auto workDir = makeWorkDir();
	if (!workDir)
		return std::unexpected(workDir.error());
	WorkDir cleanup{*workDir};

	std::vector<hypervisor::CaptureRequest> requests;
	for (const Member &m : members) {
		hypervisor::CaptureRequest req;
		req.diskId = m.disk.diskId;
		req.newBitmap = m.manifest.bitmapName;
		req.parentBitmap = m.plan.parent ? m.plan.parent->bitmapName : "";
		req.granularity = m.index->chunkSize();
		req.persistent = m.disk.format == "qcow2";
		req.obsoleteBitmaps = m.plan.obsoleteBitmaps;
		requests.push_back(req);
	}

	std::optional<hypervisor::GuestAgentQuiescer> quiescer;
	if (request.quiesce != hypervisor::QuiesceMode::Off) {
		if (request.qgaSocket.empty())
			return fail(errc::kMissingParameter, "--quiesce needs --qga-socket");
		quiescer.emplace(request.qgaSocket, request.quiesce, request.freezeTimeout);
	}

	std::string startTime = isoTimeNow();
	for (Member &m : members)
		m.manifest.startTime = startTime;

	// From here on the snapshots exist: any failure is an outcome.
	auto outcomes = [&](const std::string &failure) {
		std::vector<SnapshotOutcome> out;
		for (Member &m : members)
			out.push_back({m.manifest, failure.empty() ? "completed" : "error", failure});
		return out;
	};

	auto capture = (*driver)->capture(requests, *workDir, quiescer ? &*quiescer : nullptr);
	if (!capture) {
		// A required freeze that failed refuses the request itself.
		bool refused = request.quiesce == hypervisor::QuiesceMode::Required && !quiescer->frozen() &&
			       !quiescer->fallbackReason().empty();
		if (refused)
			return std::unexpected(capture.error());
		return outcomes(capture.error().toString());
	}
	for (Member &m : members) {
		if (quiescer && quiescer->frozen()) {
			m.manifest.consistency = "application";
			m.manifest.freezeMillis = quiescer->freezeMillis();
		} else if (quiescer) {
			m.manifest.quiesceNote = quiescer->fallbackReason();
		}
	}
	if (quiescer && !quiescer->frozen() && request.warn)
		request.warn("the snapshot is crash-consistent only: " + quiescer->fallbackReason());

	// Progress over the whole set: each disk reports within its own total.
	std::atomic<uint64_t> base{0};
	uint64_t grandTotal = 0;
	for (const Member &m : members)
		grandTotal += m.disk.size;
	auto writer = store.newWriter();
	for (size_t i = 0; i < members.size(); i++) {
		Member &m = members[i];
		if (cancelRequested())
			return outcomes("interrupted by signal " + std::to_string(cancelSignal()));
		ProgressFn progress;
		if (request.progress)
			progress = [&, size = m.disk.size](uint64_t done, uint64_t total) {
				uint64_t scaled = total ? done * size / total : size;
				request.progress(base.load() + scaled, grandTotal);
			};
		// Disks go one after the other, so the writer's counters before
		// and after each are that snapshot's own cost.
		uint64_t addedBefore = writer->bytesAdded();
		uint64_t newBefore = writer->chunksNew(), reusedBefore = writer->chunksReused();
		auto copied = copyDisk((*capture)->exports()[i], store, *writer, *m.index, progress);
		if (!copied)
			return outcomes("disk " + m.disk.diskId + ": " + copied.error().toString());
		m.manifest.stats.chunksNew = writer->chunksNew() - newBefore;
		m.manifest.stats.chunksReused = writer->chunksReused() - reusedBefore;
		if (auto r = m.index->save(*writer, *codec, m.manifest); !r)
			return outcomes("disk " + m.disk.diskId + ": " + r.error().toString());
		base += m.disk.size;
		m.manifest.stats.bytesRead = copied->bytesRead;
		m.manifest.stats.zeroChunks = copied->zeroChunks;
		m.manifest.stats.bytesAdded = writer->bytesAdded() - addedBefore;
	}
	if (auto r = writer->commit(); !r)
		return outcomes(r.error().toString());

	std::string completion = isoTimeNow();
	std::vector<std::string> written;
	for (Member &m : members) {
		m.manifest.completionTime = completion;
		if (auto r = store.putManifest(m.manifest); !r) {
			// All or nothing: a set never stays half-written.
			for (const std::string &id : written)
				(void)store.deleteManifest(id);
			return outcomes("disk " + m.disk.diskId + ": " + r.error().toString());
		}
		written.push_back(m.manifest.snapshotId);
	}

	// Durable: only now may the parents' bitmaps go. Failing to drop one
	// costs memory in QEMU, not correctness, so the snapshots stand.
	if (auto r = (*capture)->commit(); !r && request.warn)
		request.warn(r.error().message);
	return outcomes("");
}

Result<void> deleteSnapshot(store::Store &store, const std::string &snapshotId)
{
	VS_TRY(checkSnapshotId(snapshotId));
	return store.deleteManifest(snapshotId);
}

} // namespace virtsnap::engine
