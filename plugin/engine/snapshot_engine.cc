#include "snapshot_engine.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "core/cancel.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "disk_copier.h"
#include "image_product_codes.h"
#include "kms_keys.h"
#include "resources.h"
#include "set_progress.h"
#include "work_dir.h"

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

// The key domain a snapshot's chunks are sealed under; "" the store's
// default (`defaultKey`), whether named or not.
std::string sealingKeyOf(const store::Manifest &m, const std::string &defaultKey)
{
	return m.encrypted && m.kmsKeyId != defaultKey ? m.kmsKeyId : "";
}

// `key`: the new snapshot's (sealingKeyOf). Chunk ids are keyed per
// domain, so a parent under another key has no id the new one can keep.
Plan planCapture(const std::vector<store::Manifest> &history, const DiskInfo &disk, const std::string &key,
		 const std::string &defaultKey)
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
	else if (sealingKeyOf(*latest, defaultKey) != key)
		plan.reason = "the volume's key changed since " + latest->snapshotId;
	else
		plan.parent = latest;
	// An unusable bitmap of the latest snapshot is obsolete too.
	if (!plan.parent && bm)
		plan.obsoleteBitmaps.push_back(bm->name);
	return plan;
}

// The boot volume: the disk with the lowest bootindex, else the first.
const DiskInfo *bootDisk(const std::vector<DiskInfo> &disks)
{
	const DiskInfo *boot = nullptr;
	for (const DiskInfo &d : disks)
		if (d.bootIndex >= 0 && (!boot || d.bootIndex < boot->bootIndex))
			boot = &d;
	return boot ? boot : (disks.empty() ? nullptr : &disks.front());
}

} // namespace

unsigned disksAtOnce(size_t disks, unsigned requested)
{
	// One disk's copy is held near 1.3 GB/s by its NBD export, which QEMU
	// serves from one thread; hashing, compressing and sealing that much
	// takes about 3 cores where chunks are zeros, compress or dedup, up to
	// 5 for random data (4.2 CPU s per GiB: tests/bench/RESULTS.md). So a
	// copy per 3 cores keeps a large host's cores busy, and on fewer than
	// 6 the disks go one after another, each over every core: side by side
	// they would only split the same cores, and hold a buffer pool each.
	size_t wanted = requested ? requested : std::max(1u, std::thread::hardware_concurrency()) / 3;
	return unsigned(std::clamp<size_t>(wanted, 1, std::max<size_t>(disks, 1)));
}

Result<std::vector<DiskInfo>> selectDisks(hypervisor::Driver &driver, const SnapshotSetRequest &request)
{
	VS_ASSIGN(auto all, driver.disks());
	auto known = [&](const std::string &id) {
		return std::any_of(all.begin(), all.end(),
				   [&](const DiskInfo &d) { return d.diskId == id || d.nodeName == id; });
	};
	for (const std::string &id : request.excludeDisks)
		if (!known(id))
			return std::unexpected(driver.disk(id).error());

	std::vector<DiskInfo> chosen;
	if (!request.disks.empty()) {
		for (const std::string &id : request.disks) {
			VS_ASSIGN(auto d, driver.disk(id));
			chosen.push_back(d);
		}
	} else {
		const DiskInfo *boot = bootDisk(all);
		for (const DiskInfo &d : all) {
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
		return fail(errc::kInvalidParameterValue, "no disk of " + driver.describe() +
								  " is left to snapshot after the exclusions");
	if (chosen.size() > kMaxSetDisks)
		return fail(errc::kInvalidParameterValue, "the instance has " + std::to_string(chosen.size()) +
								  " disks; a snapshot set takes at most " +
								  std::to_string(kMaxSetDisks));
	return chosen;
}

namespace {

// One disk of the set while it is being taken.
struct Member {
	DiskInfo disk;
	store::Manifest manifest;
	Plan plan;
	std::optional<store::SnapshotIndex> index;
};

std::vector<SnapshotOutcome> outcomesOf(std::vector<Member> &members, SnapshotState state,
					const std::string &message)
{
	std::vector<SnapshotOutcome> out;
	for (Member &m : members)
		out.push_back({m.manifest, state, message});
	return out;
}

// A set that failed at its point in time: nothing to move, every snapshot
// is already in error.
class FailedJob : public SnapshotJob
{
public:
	explicit FailedJob(std::vector<SnapshotOutcome> outcomes) : outcomes_(std::move(outcomes)) {}
	std::vector<SnapshotOutcome> pending() const override { return outcomes_; }
	std::string cleanupRecord() const override { return "{}"; }
	std::vector<SnapshotOutcome> run(const ProgressFn &, const std::function<bool()> &) override
	{
		return outcomes_;
	}

private:
	std::vector<SnapshotOutcome> outcomes_;
};

class SetJob : public SnapshotJob
{
public:
	SetJob(store::Store &store, std::unique_ptr<store::Lease> lease, std::vector<Member> members,
	       std::vector<std::vector<store::Manifest>> history, std::unique_ptr<hypervisor::Capture> capture,
	       std::unique_ptr<WorkDir> workDir, std::function<void(const std::string &)> warn, unsigned parallel)
		: store_(store), lease_(std::move(lease)), members_(std::move(members)), history_(std::move(history)),
		  capture_(std::move(capture)), workDir_(std::move(workDir)), warn_(std::move(warn)),
		  parallel_(disksAtOnce(members_.size(), parallel))
	{
	}

	~SetJob() override
	{
		// The capture goes before its scratch directory.
		capture_.reset();
	}

	std::vector<SnapshotOutcome> pending() const override
	{
		std::vector<SnapshotOutcome> out;
		for (const Member &m : members_)
			out.push_back({m.manifest, SnapshotState::Pending, ""});
		return out;
	}

	std::string cleanupRecord() const override { return capture_->cleanupRecord(); }

	std::vector<SnapshotOutcome> run(const ProgressFn &progress, const std::function<bool()> &cancelled) override
	{
		auto outcomes = transfer(progress, cancelled);
		// Whatever happened, QEMU gets its resources back now.
		capture_.reset();
		return outcomes;
	}

private:
	std::vector<SnapshotOutcome> transfer(const ProgressFn &progress, const std::function<bool()> &cancelled)
	{
		auto failed = [&](const std::string &why) { return outcomesOf(members_, SnapshotState::Error, why); };
		auto writer = store_.newWriter();
		if (auto why = copyAll(*writer, progress, cancelled))
			return failed(*why);
		if (auto r = writer->commit(); !r)
			return failed(r.error().toString());
		// Dedup found chunks that gc elsewhere could have removed, had it
		// judged this lease expired: then no manifest may name them.
		if (!lease_->held())
			return failed(errc::kStoreUnavailable + std::string(": the lease on ") + store_.describe() +
				      " could not be renewed in time; nothing was committed");

		std::string completion = isoTimeNow();
		std::vector<std::string> written;
		for (Member &m : members_) {
			m.manifest.completionTime = completion;
			if (auto r = store_.putManifest(m.manifest); !r) {
				// All or nothing: a set never stays half-written.
				for (const std::string &id : written)
					(void)store_.deleteManifest(id);
				return failed("disk " + m.disk.diskId + ": " + r.error().toString());
			}
			written.push_back(m.manifest.snapshotId);
		}

		// Durable: only now may the parents' bitmaps go. Failing to drop
		// one costs memory in QEMU, not correctness.
		if (auto r = capture_->commit(); !r && warn_)
			warn_(r.error().message);
		return outcomesOf(members_, SnapshotState::Completed, "");
	}

	// Copies every disk into `writer`, up to parallel_ at once. Returns why
	// the set failed: the first failure, upon which the copies still
	// running are cancelled and no further one starts.
	std::optional<std::string> copyAll(store::ChunkWriter &writer, const ProgressFn &progress,
					   const std::function<bool()> &cancelled)
	{
		std::vector<uint64_t> sizes;
		for (const Member &m : members_)
			sizes.push_back(m.disk.size);
		SetProgress setProgress(std::move(sizes), progress);
		std::atomic<size_t> next{0};
		std::atomic<bool> stop{false};
		std::mutex failureMutex;
		std::optional<std::string> failure;
		auto fail = [&](std::string why) {
			std::lock_guard lock(failureMutex);
			if (!failure)
				failure = std::move(why);
			stop = true;
		};
		std::function<bool()> stopped = [&] {
			return stop.load() || cancelRequested() || (cancelled && cancelled());
		};
		// The cores shared out: a copy alone on a host uses all of them.
		// Each copy holds its own pool of 8 + 2 x workers 1 MiB buffers
		// (copy_pipeline.h), so K copies about 8 K + 2 x cores MiB.
		const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
		const unsigned workers = (cores + parallel_ - 1) / parallel_;
		auto copier = [&] {
			for (size_t i = next++; i < members_.size(); i = next++) {
				const std::string &diskId = members_[i].disk.diskId;
				if (stopped())
					return fail("interrupted before " + diskId + " was read");
				if (auto r = copyMember(i, writer, setProgress.of(i), stopped, workers); !r)
					return fail("disk " + diskId + ": " + r.error().toString());
			}
		};
		std::vector<std::thread> others;
		for (unsigned t = 1; t < parallel_; t++)
			others.emplace_back(copier);
		copier();
		for (std::thread &t : others)
			t.join();
		if (!failure)
			setProgress.finished();
		return failure;
	}

	// Disk i into `writer`, its index saved: its snapshot's stats are what
	// its own puts cost, whatever the other copies put meanwhile. A chunk
	// two copies put at once is stored by one and reused by the other.
	Result<void> copyMember(size_t i, store::ChunkWriter &writer, const ProgressFn &progress,
				const std::function<bool()> &cancelled, unsigned workers)
	{
		Member &m = members_[i];
		VS_ASSIGN(CopyStats copied,
			  copyDisk(capture_->exports()[i], store_, writer, *m.index, progress, cancelled, workers));
		VS_ASSIGN(auto codec, store_.codecOf(m.manifest));
		store::WriteTally pages;
		VS_TRY(m.index->save(writer, *codec, m.manifest, &pages));
		m.manifest.stats.bytesRead = copied.bytesRead;
		m.manifest.stats.zeroChunks = copied.zeroChunks;
		m.manifest.stats.chunksNew = copied.chunksNew;
		m.manifest.stats.chunksReused = copied.chunksReused;
		// The index pages it saved count in what it added, not in chunks.
		m.manifest.stats.bytesAdded = copied.bytesAdded + pages.bytesAdded;
		return {};
	}

	store::Store &store_;
	std::unique_ptr<store::Lease> lease_; // until the manifests are written, gc elsewhere waits
	std::vector<Member> members_;
	std::vector<std::vector<store::Manifest>> history_; // plans point into it
	std::unique_ptr<hypervisor::Capture> capture_;
	std::unique_ptr<WorkDir> workDir_;
	std::function<void(const std::string &)> warn_;
	unsigned parallel_; // disks copied at once
};

// What each volume of the instance continues from: the bitmap of its latest
// snapshot (manifests list oldest first).
std::map<std::string, std::string> latestBitmaps(const std::vector<store::Manifest> &all, const std::string &instanceKey)
{
	std::map<std::string, std::string> latest;
	for (const store::Manifest &x : all)
		if (x.volume.instanceKey == instanceKey)
			latest[x.volumeId] = x.bitmapName;
	return latest;
}

std::vector<std::string> valuesOf(const std::map<std::string, std::string> &m)
{
	std::vector<std::string> out;
	for (const auto &[k, v] : m)
		out.push_back(v);
	return out;
}

Result<void> refuseHibernation(hypervisor::Driver &driver, const hypervisor::InstanceInfo &instance,
			       const std::optional<InstanceRecord> &record)
{
	if (instance.hibernated)
		return fail(errc::kIncorrectState, driver.describe() +
							   " is hibernated; snapshots are refused until it resumes");
	if (instance.hibernationEnabled)
		return fail(errc::kIncorrectState, driver.describe() +
							   " has hibernation enabled; snapshots of it are refused");
	if (record && record->hibernationEnabled)
		return fail(errc::kIncorrectState, "instance " + record->instanceId +
							   " has hibernation enabled; snapshots of it are refused");
	return {};
}

} // namespace

namespace {

// A disk's snapshot before its point in time: ids, what it was taken of,
// the request's attributes. First sight of a volume registers it; its tags
// may be copied.
Result<Member> newMember(store::Store &store, const SnapshotSetRequest &request, const hypervisor::Driver &driver,
			 const hypervisor::InstanceInfo &instance, const DiskInfo &disk, const std::string &setId)
{
	Member m{disk, {}, {}, {}};
	store::Manifest &man = m.manifest;
	if (auto given = request.snapshotIds.find(disk.diskId); given != request.snapshotIds.end()) {
		man.snapshotId = given->second;
	} else if (!request.snapshotIds.empty()) {
		return fail(errc::kIncorrectState, "disk " + disk.diskId + " appeared after the request was queued");
	} else {
		VS_ASSIGN(man.snapshotId, newResourceId("snap-"));
	}
	man.volumeId = volumeIdFor(instance.key, disk.diskId);
	man.volume = {instance.key, instance.name, disk.diskId, disk.format};
	man.description = request.description;
	man.name = request.name;
	man.ownerId = request.ownerId;
	man.accountId = request.accountId;
	man.tags = request.tags;
	man.productCodes = instance.productCodes;
	// One checkpoint names the bitmaps of a whole set where the driver
	// shares names across disks.
	man.bitmapName = driver.sharedBitmapNames() && !setId.empty() ? setId : man.snapshotId;
	man.snapshotSetId = setId;
	man.volumeSize = disk.size;

	VS_ASSIGN(auto known, loadVolume(store, man.volumeId));
	VolumeRecord record =
		known.value_or(VolumeRecord{man.volumeId, instance.key, instance.name, disk.diskId, disk.size, "standard", {}, false, "", {}});
	const bool newCodes = addImageProductCodes(record, disk, request.warn);
	// A LUKS image makes its volume encrypted for good, as a mark does:
	// EBS never turns an encrypted volume back.
	// A volume describe-volumes found encrypted has no key yet: the first
	// snapshot gives it one.
	bool nowEncrypted = (disk.encrypted || record.encrypted) && record.kmsKeyId.empty();
	if (!known || record.size != disk.size || record.instanceName != instance.name || nowEncrypted || newCodes) {
		record.size = disk.size;
		record.instanceName = instance.name;
		record.encrypted |= disk.encrypted;
		if (record.encrypted && record.kmsKeyId.empty()) {
			// A LUKS image: its account's default key, as EBS's aws/ebs.
			VS_ASSIGN(record.kmsKeyId, accountDefaultKmsKey(store, request.accountId));
		}
		VS_TRY(saveVolume(store, record));
	}
	man.encrypted = record.encrypted;
	man.kmsKeyId = record.encrypted ? record.kmsKeyId : "";
	// A volume restored from a snapshot with product codes keeps them,
	// as does an image file marked with them.
	addProductCodes(man.productCodes, record.productCodes);
	if (request.copyTagsFromSource)
		for (const auto &[k, v] : record.tags)
			if (std::none_of(man.tags.begin(), man.tags.end(), [&](const auto &t) { return t.first == k; }))
				man.tags.emplace_back(k, v);
	return m;
}

// Full or incremental per disk, and the index each starts from. Returns
// each member's history (its volume's manifests, oldest first).
Result<std::vector<std::vector<store::Manifest>>> planMembers(store::Store &store, std::vector<Member> &members,
							       const std::vector<store::Manifest> &all)
{
	std::vector<std::vector<store::Manifest>> history(members.size());
	for (size_t i = 0; i < members.size(); i++) {
		Member &m = members[i];
		for (const store::Manifest &x : all)
			if (x.volumeId == m.manifest.volumeId)
				history[i].push_back(x);
		const std::string defaultKey = store.domain().idHex();
		m.plan = planCapture(history[i], m.disk, sealingKeyOf(m.manifest, defaultKey), defaultKey);
		// The new snapshot's key: a parent has the same one (planCapture).
		VS_ASSIGN(auto codec, store.codecOf(m.manifest));
		if (m.plan.parent) {
			VS_ASSIGN(auto loaded, store::SnapshotIndex::load(store, *codec, *m.plan.parent));
			m.index.emplace(std::move(loaded));
			m.manifest.parentSnapshotId = m.plan.parent->snapshotId;
			m.manifest.captureMode = "incremental";
		} else {
			m.index.emplace(m.disk.size, store.chunkSize());
			m.index->setDomain(codec->domain());
			m.manifest.captureMode = "full";
			m.manifest.captureReason = m.plan.reason;
		}
	}
	return history;
}

hypervisor::CaptureSpec captureSpec(const std::vector<Member> &members, const std::filesystem::path &workDir,
				    hypervisor::Quiescer *quiescer, const std::map<std::string, std::string> &latestBitmap)
{
	hypervisor::CaptureSpec spec{{}, workDir, quiescer, {}, {}};
	for (const Member &m : members) {
		hypervisor::CaptureRequest req;
		req.diskId = m.disk.diskId;
		req.newBitmap = m.manifest.bitmapName;
		req.parentBitmap = m.plan.parent ? m.plan.parent->bitmapName : "";
		req.granularity = m.index->chunkSize();
		req.persistent = m.disk.format == "qcow2";
		req.obsoleteBitmaps = m.plan.obsoleteBitmaps;
		spec.disks.push_back(req);
	}
	// Bitmaps the other volumes of the instance continue from.
	for (const auto &[volumeId, bitmap] : latestBitmap)
		if (std::none_of(members.begin(), members.end(),
				 [&](const Member &m) { return m.manifest.volumeId == volumeId; }))
			spec.stillNeeded.push_back(bitmap);
	return spec;
}

// What the freeze gave every snapshot: application-consistent, or why not.
void recordConsistency(std::vector<Member> &members, const hypervisor::Quiescer *quiescer,
		       const std::function<void(const std::string &)> &warn)
{
	if (!quiescer)
		return;
	for (Member &m : members) {
		if (quiescer->frozen()) {
			m.manifest.consistency = "application";
			m.manifest.freezeMillis = quiescer->freezeMillis();
		} else if (!quiescer->fallbackReason().empty()) {
			m.manifest.quiesceNote = quiescer->fallbackReason();
		}
	}
	if (!quiescer->frozen() && !quiescer->fallbackReason().empty() && warn)
		warn("the snapshot is crash-consistent only: " + quiescer->fallbackReason());
}

} // namespace

Result<std::unique_ptr<SnapshotJob>> beginSnapshots(store::Store &store, const SnapshotSetRequest &request)
{
	VS_ASSIGN(std::unique_ptr<WorkDir> work, WorkDir::create());
	const std::shared_ptr<hypervisor::Driver> &driver = request.driver;
	if (!driver)
		return fail(errc::kInternal, "beginSnapshots without a driver");
	VS_ASSIGN(hypervisor::InstanceInfo instance, driver->instance());
	VS_ASSIGN(auto registered, loadInstance(store, instanceIdFor(instance.key)));
	VS_TRY(refuseHibernation(*driver, instance, registered));
	// Every volume carries the instance's product codes: the ones it
	// declares and the ones it was registered with.
	if (registered)
		addProductCodes(instance.productCodes, registered->productCodes);
	// From before the parents are read until the manifests are written,
	// the chunks this snapshot relies on must stay: no gc meanwhile.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "snapshot of " + driver->describe()));

	VS_ASSIGN(std::vector<store::Manifest> all, store.listManifests());
	// The driver squares its own records with what the volumes continue
	// from before the disks are read for planning.
	std::map<std::string, std::string> latestBitmap = latestBitmaps(all, instance.key);
	VS_ASSIGN(std::vector<std::string> notes, driver->reconcile(valuesOf(latestBitmap)));
	for (const std::string &note : notes)
		if (request.warn)
			request.warn(note);

	VS_ASSIGN(std::vector<DiskInfo> disks, selectDisks(*driver, request));
	// A queued request's ids must all find their disk again.
	for (const auto &[diskId, snapshotId] : request.snapshotIds)
		if (std::none_of(disks.begin(), disks.end(), [&](const DiskInfo &d) { return d.diskId == diskId; }))
			return fail(errc::kIncorrectState, "disk " + diskId + " (for " + snapshotId +
								   ") is gone from the instance since the request was queued");
	std::string setId = request.snapshotSetId;
	if (setId.empty() && (disks.size() > 1 || request.disks.empty())) {
		VS_ASSIGN(setId, newResourceId("ss-"));
	}
	std::vector<Member> members;
	for (const DiskInfo &disk : disks) {
		VS_ASSIGN(Member m, newMember(store, request, *driver, instance, disk, setId));
		members.push_back(std::move(m));
	}
	VS_ASSIGN(auto history, planMembers(store, members, all));

	std::unique_ptr<hypervisor::Quiescer> quiescer;
	if (request.quiesce != hypervisor::QuiesceMode::Off)
		quiescer = driver->quiescer(request.quiesce, request.freezeTimeout, request.qgaSocket);
	hypervisor::CaptureSpec spec = captureSpec(members, work->path(), quiescer.get(), latestBitmap);
	if (request.beforeCapture) {
		std::vector<std::string> ids;
		for (const Member &m : members)
			ids.push_back(m.manifest.snapshotId);
		spec.beforeChanges = [&request, ids](const std::string &record) {
			return request.beforeCapture(ids, record);
		};
	}
	std::string startTime = isoTimeNow();
	for (Member &m : members)
		m.manifest.startTime = startTime;
	auto capture = driver->capture(spec);
	if (!capture) {
		// A required freeze that failed refuses the request itself.
		bool refused = quiescer && request.quiesce == hypervisor::QuiesceMode::Required && !quiescer->frozen() &&
			       !quiescer->fallbackReason().empty();
		if (refused)
			return std::unexpected(capture.error());
		// Past the transaction, the snapshots exist: they failed.
		return std::unique_ptr<SnapshotJob>(
			std::make_unique<FailedJob>(outcomesOf(members, SnapshotState::Error, capture.error().toString())));
	}
	recordConsistency(members, quiescer.get(), request.warn);
	return std::unique_ptr<SnapshotJob>(std::make_unique<SetJob>(store, std::move(lease), std::move(members),
								     std::move(history), std::move(*capture),
								     std::move(work), request.warn, request.parallelDisks));
}

Result<std::vector<std::string>> reconcileInstance(store::Store &store, hypervisor::Driver &driver)
{
	VS_ASSIGN(hypervisor::InstanceInfo instance, driver.instance());
	VS_ASSIGN(std::vector<store::Manifest> all, store.listManifests());
	return driver.reconcile(valuesOf(latestBitmaps(all, instance.key)));
}

} // namespace virtsnap::engine
