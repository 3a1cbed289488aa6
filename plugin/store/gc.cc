#include "gc.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "core/cancel.h"
#include "export_records.h"
#include "held_manifests.h"

namespace virtsnap::store {

namespace {

using FileInfo = ObjectInfo;

// What the store holds under one pack id.
struct PackFiles {
	std::vector<FileInfo> packs;
	std::vector<FileInfo> indexes;
};

// A pack whose every chunk is unreferenced, or that has no index.
struct Removal {
	PackId id{};
	FileInfo pack;
	std::optional<FileInfo> index;
	uint64_t deadChunks = 0;
};

// A pack to rewrite with its live chunks only.
struct Repack {
	PackId id{};
	FileInfo pack;
	FileInfo index;
	std::vector<PackEntry> live; // in pack order
	uint64_t deadChunks = 0;
};

inline constexpr uint32_t kNoPack = UINT32_MAX;

// A referenced id: whether some pack index names it, and which pack that
// stays (is neither removed nor repacked in this run) holds it, if any, as
// a number into SweepPlan::kept.
struct Mark {
	bool indexed = false;
	uint32_t keptIn = kNoPack;
};
using Marks = std::unordered_map<ChunkId, Mark, ChunkIdHash>;

constexpr std::chrono::seconds kYoungestPartial{60};

std::unexpected<Error> interrupted()
{
	return fail(errc::kIncorrectState, "gc interrupted by signal " + std::to_string(cancelSignal()));
}

// Every manifest, and those held outside snapshots/ (locked snapshots,
// the Recycle Bin: held_manifests.h) whose time is not up by the store's
// clock.
Result<std::vector<Manifest>> manifestsToMark(Store &store, HeldSet &held, GcReport &report)
{
	auto manifests = store.listManifests();
	if (!manifests)
		return fail(manifests.error().code, "gc cannot read every manifest (" + manifests.error().message +
							    "); nothing was removed");
	VS_ASSIGN(auto now, store.backend().now());
	auto listed = listHeldManifests(store, unixSeconds(now));
	if (!listed)
		return fail(listed.error().code, "gc cannot read every locked or recycled snapshot (" +
							 listed.error().message + "); nothing was removed");
	held = std::move(*listed);
	report.snapshotsHeld = held.held.size();
	for (Manifest &m : held.held)
		manifests->push_back(std::move(m));
	return manifests;
}

// Mark: every manifest, its index pages and every id they name. Anything
// unreadable stops gc, since what it references is then unknown.
Result<Marks> mark(Store &store, const GcOptions &opts, GcReport &report, HeldSet &held)
{
	auto manifests = manifestsToMark(store, held, report);
	if (!manifests)
		return std::unexpected(manifests.error());
	// Index pages are sealed under each snapshot's key domain: gc reads
	// every one, whoever owns the key (FORMAT.md, "Keys").
	std::unordered_map<std::string, std::unique_ptr<ChunkCodec>> codecs;
	Marks marks;
	// Unchanged pages are shared by the snapshots of a volume: read once.
	std::unordered_set<ChunkId, ChunkIdHash> pagesRead;
	for (const Manifest &m : *manifests) {
		if (cancelRequested())
			return interrupted();
		report.snapshots++;
		std::unique_ptr<ChunkCodec> &codec = codecs[m.encrypted ? m.kmsKeyId : std::string()];
		if (!codec) {
			auto made = store.codecOf(m);
			if (!made)
				return fail(made.error().code, "gc cannot open the key of " + m.snapshotId + " (" +
								       made.error().message + "); nothing was removed");
			codec = std::move(*made);
		}
		for (size_t p = 0; p < m.indexPages.size(); p++) {
			const ChunkId &pageId = m.indexPages[p];
			if (isZeroId(pageId))
				continue;
			marks.emplace(pageId, Mark{});
			if (!pagesRead.insert(pageId).second)
				continue;
			auto page = store.readChunk(*codec, pageId);
			if (!page)
				return fail(page.error().code,
					    "gc cannot read index page " + std::to_string(p) + " of " + m.snapshotId +
						    " (" + page.error().message +
						    "); nothing was removed (run virtsnap verify)");
			if (page->size() % sizeof(ChunkId) != 0)
				return fail(errc::kCorrupt, "gc: index page " + std::to_string(p) + " of " +
								    m.snapshotId +
								    " has a wrong size; nothing was removed (run "
								    "virtsnap verify)");
			for (size_t off = 0; off < page->size(); off += sizeof(ChunkId)) {
				ChunkId id;
				std::memcpy(id.data(), page->data() + off, sizeof(ChunkId));
				if (!isZeroId(id))
					marks.emplace(id, Mark{});
			}
		}
	}
	if (opts.pinned) {
		auto pinned = opts.pinned();
		if (!pinned)
			return fail(pinned.error().code, "gc cannot learn the chunks of writes in flight (" +
								 pinned.error().message + "); nothing was removed");
		for (const ChunkId &id : *pinned)
			if (marks.emplace(id, Mark{}).second)
				report.chunksPinned++;
	}
	report.chunksReferenced = marks.size();
	return marks;
}

// Pack objects and indexes by pack id, as Store::refresh finds them.
Result<std::map<std::string, PackFiles>> scanPacks(Backend &backend)
{
	std::map<std::string, PackFiles> out;
	VS_TRY(backend.list("packs/", [&](const ObjectInfo &info) {
		bool isIndex = false;
		if (auto id = packIdOf(info.name, &isIndex)) {
			PackFiles &f = out[toHex(*id)];
			(isIndex ? f.indexes : f.packs).push_back(info);
		}
	}));
	return out;
}

// Removes and accounts; an object already gone is not an error (a run
// that crashed may have removed it). Durable when it returns.
Result<void> removeObject(Store &store, const FileInfo &f, GcReport &report)
{
	VS_TRY(store.backend().remove(f.name));
	report.bytesRemoved += f.size;
	return {};
}

// Index first, then the pack (FORMAT.md): a crash in between leaves a
// pack without index, which nothing reads and a later gc removes; the
// other order would leave an index naming chunks that no longer exist,
// and writers would dedup against them.
Result<void> removePacks(Store &store, const Lease &lease, const std::vector<const FileInfo *> &indexes,
			 const std::vector<const FileInfo *> &packs, GcReport &report)
{
	// Deletions are what other hosts' writers must never race: only while
	// no one can have judged gc's lease expired.
	if (!lease.held())
		return fail(errc::kStoreUnavailable, "gc lost its lease on " + store.describe() +
							     " (it could not renew it in time); it stopped before removing more");
	for (const FileInfo *f : indexes)
		VS_TRY(removeObject(store, *f, report));
	for (const FileInfo *f : packs)
		VS_TRY(removeObject(store, *f, report));
	return {};
}

// Copies the live blobs of sparse packs, verbatim (a blob is
// self-contained: header, nonce and tag travel with it, so ids and
// encryption stay), into new packs written as any writer writes them. An
// old pack is deleted only once every blob it gave is in a durable pack.
// A blob that a pack which stays holds too is not copied: a gc that died
// after writing its new pack and before deleting the old ones left every
// live chunk of those twice, and copying them again would only make a
// third copy that no later gc drops.
class Repacker
{
public:
	Repacker(Store &store, const Lease &lease, GcReport &report, bool dryRun, const Marks &marks,
		 const std::vector<PackId> &kept, std::vector<PackId> &gone, std::vector<PackId> &holders)
		: store_(store), lease_(lease), report_(report), dryRun_(dryRun), marks_(marks), kept_(kept),
		  gone_(gone), holders_(holders)
	{
	}

	Result<void> add(const Repack &r)
	{
		// The whole pack in one read: one request, where a read per blob
		// would be hundreds on an object store.
		Bytes pack;
		if (!dryRun_) {
			auto read = store_.backend().get(r.pack.name);
			if (!read) {
				report_.warnings.push_back("pack " + toHex(r.id) + " cannot be read (" + read.error().message +
							   "): not repacked");
				return {};
			}
			pack = std::move(*read);
		}
		for (const PackEntry &e : r.live) {
			if (cancelRequested())
				return interrupted();
			if (copied_.count(e.id) || heldElsewhere(e.id))
				continue;
			if (size_ > 0 && size_ + e.length > kPackTargetSize)
				VS_TRY(flush());
			if (!dryRun_) {
				auto blob = e.offset + e.length <= pack.size() ? std::span<const uint8_t>(pack).subspan(e.offset, e.length)
										 : std::span<const uint8_t>();
				auto h = blob.empty() ? Result<BlobHeader>(fail(errc::kCorrupt, "the pack ends before it"))
						      : parseBlobHeader(blob);
				if (!h || h->id != e.id || h->blobLength() != e.length) {
					// Left as it is: a damaged blob stays where verify
					// finds it. What this pack gave so far is only an
					// extra copy.
					report_.warnings.push_back(
						"pack " + toHex(r.id) + ": chunk " + idHex(e.id).substr(0, 16) + " at offset " +
						std::to_string(e.offset) + " is damaged (" +
						(h ? std::string("its header does not match the index") : h.error().message) +
						"): pack not repacked (run virtsnap verify)");
					return {};
				}
				if (!writer_) {
					VS_ASSIGN(auto w, PackWriter::create(store_.backend()));
					writer_.emplace(std::move(w));
				}
				VS_TRY(writer_->append({e.id, e.type, e.flags, e.rawLength, blob}));
				size_ = writer_->size();
			} else {
				size_ = (size_ ? size_ : kPackHeaderSize) + e.length;
			}
			count_++;
			copied_.insert(e.id);
			report_.chunksCopied++;
		}
		done_.push_back(&r);
		return {};
	}

	// Makes the current pack durable, then deletes the old packs it and
	// earlier ones replace.
	Result<void> flush()
	{
		if (count_ > 0) {
			if (!dryRun_) {
				auto index = writer_->finish(store_.domain());
				writer_.reset();
				if (!index)
					return std::unexpected(index.error());
				for (const std::string &name : {packName(index->packId), packIndexName(index->packId)})
					if (auto f = store_.backend().stat(name))
						report_.bytesWritten += f->size;
			} else {
				VS_TRY(addSealedIndexSize());
				report_.bytesWritten += size_;
			}
			report_.packsWritten++;
		}
		size_ = count_ = 0;
		std::vector<const FileInfo *> indexes, packs;
		for (const Repack *r : done_) {
			indexes.push_back(&r->index);
			packs.push_back(&r->pack);
			report_.packsRepacked++;
			report_.chunksRemoved += r->deadChunks;
		}
		if (!dryRun_) {
			for (const Repack *r : done_)
				gone_.push_back(r->id);
			VS_TRY(removePacks(store_, lease_, indexes, packs, report_));
		} else {
			for (const Repack *r : done_)
				report_.bytesRemoved += r->pack.size + r->index.size;
		}
		done_.clear();
		return {};
	}

private:
	// Whether a pack that stays holds `id`; the first time one is relied on
	// for it, that pack goes to holders_ (see collectGarbage).
	bool heldElsewhere(const ChunkId &id)
	{
		auto m = marks_.find(id);
		if (m == marks_.end() || m->second.keptIn == kNoPack)
			return false;
		if (!dryRun_ && holderSeen_.insert(m->second.keptIn).second)
			holders_.push_back(kept_[m->second.keptIn]);
		return true;
	}

	// A dry run writes nothing, so it works out the index it would seal.
	Result<void> addSealedIndexSize()
	{
		PackIndex index;
		index.entries.resize(count_);
		auto sealed = sealObject(ObjectType::PackIndex, store_.domain().id, store_.domain().encKey,
					 std::string(32, '0'), serializePackIndex(index));
		if (!sealed)
			return std::unexpected(sealed.error());
		report_.bytesWritten += sealed->size();
		return {};
	}

	Store &store_;
	const Lease &lease_;
	GcReport &report_;
	bool dryRun_;
	const Marks &marks_;
	const std::vector<PackId> &kept_;
	std::vector<PackId> &gone_;
	std::vector<PackId> &holders_;
	std::unordered_set<uint32_t> holderSeen_;
	std::optional<PackWriter> writer_;
	uint64_t size_ = 0; // of the pack being written, 0 when there is none
	uint64_t count_ = 0;
	std::vector<const Repack *> done_;
	std::unordered_set<ChunkId, ChunkIdHash> copied_;
};

// What the sweep does to each pack: keep it, remove it, rewrite it.
struct SweepPlan {
	std::vector<Removal> removals;
	std::vector<Repack> repacks;
	std::vector<std::pair<PackId, FileInfo>> withoutIndex;
	std::vector<PackId> kept; // packs that stay and hold referenced chunks (Mark::keptIn)
};

// Sorts every pack by what its index says of its chunks. Packs younger
// than the grace period may belong to a writer in flight: only counted.
Result<void> classify(Store &store, const GcOptions &opts, Marks &marks, GcReport &report,
		      const std::function<bool(const FileInfo &)> &old, std::map<std::string, PackFiles> &found,
		      SweepPlan &plan)
{
	for (auto &[name, files] : found) {
		if (cancelRequested())
			return interrupted();
		if (files.packs.size() > 1 || files.indexes.size() > 1) {
			report.warnings.push_back("pack " + name + " has more than one object of a kind: left alone");
			continue;
		}
		if (files.packs.empty()) {
			// Never left by a writer or by gc (the pack is always
			// there first and gone last): damage, for a human to see.
			report.warnings.push_back("pack index " + files.indexes[0].name +
						  " has no pack: left alone (run virtsnap verify)");
			continue;
		}
		const FileInfo &packFile = files.packs[0];
		bool isIndex = false;
		PackId id = *packIdOf(packFile.name, &isIndex);
		if (files.indexes.empty()) {
			plan.withoutIndex.emplace_back(id, packFile);
			continue;
		}
		const FileInfo &indexFile = files.indexes[0];
		auto index = PackReader(store.backend(), id).index(store.domain());
		if (!index) {
			report.warnings.push_back("pack index " + indexFile.name + " cannot be read (" + index.error().message +
						  "): pack left alone");
			continue;
		}
		uint64_t liveBytes = 0, deadBytes = 0, deadChunks = 0;
		std::vector<PackEntry> live;
		for (const PackEntry &e : index->entries) {
			auto m = marks.find(e.id);
			if (m != marks.end()) {
				m->second.indexed = true;
				liveBytes += e.length;
				live.push_back(e);
			} else {
				deadBytes += e.length;
				deadChunks++;
			}
		}
		report.chunksUnreferenced += deadChunks;
		// This pack stays: repacking need not copy what it holds.
		auto keep = [&] {
			if (live.empty())
				return;
			uint32_t ordinal = uint32_t(plan.kept.size());
			plan.kept.push_back(id);
			for (const PackEntry &e : live)
				if (Mark &m = marks[e.id]; m.keptIn == kNoPack)
					m.keptIn = ordinal;
		};
		if (deadChunks == 0) {
			keep();
			continue;
		}
		bool wholeDead = live.empty();
		bool sparse = !wholeDead && double(deadBytes) >= opts.repackThreshold * double(liveBytes + deadBytes);
		if (!wholeDead && !sparse) {
			keep();
			continue;
		}
		if (!old(packFile) || !old(indexFile)) {
			report.packsSpared++;
			keep();
			continue;
		}
		if (wholeDead) {
			plan.removals.push_back(Removal{id, packFile, indexFile, deadChunks});
		} else {
			std::sort(live.begin(), live.end(),
				  [](const PackEntry &a, const PackEntry &b) { return a.offset < b.offset; });
			plan.repacks.push_back(Repack{id, packFile, indexFile, std::move(live), deadChunks});
		}
	}
	return {};
}

// Packs without index: a writer died between the pack's commit and its
// index's, or gc between removing a repacked pack's index and the pack.
// Nothing can read them. A chunk one holds that snapshots reference is
// then stored again elsewhere (the writer's retry, the repack's new pack):
// only one that holds a referenced chunk no pack index names (its index
// lost some other way) is kept, for a human to re-index from its blob
// headers. classify() has flagged every id an index names.
Result<void> classifyWithoutIndex(Store &store, const Marks &marks, GcReport &report,
				  const std::function<bool(const FileInfo &)> &old, SweepPlan &plan)
{
	for (const auto &[id, packFile] : plan.withoutIndex) {
		if (cancelRequested())
			return interrupted();
		if (!old(packFile)) {
			report.packsSpared++;
			continue;
		}
		auto ids = PackReader(store.backend(), id).scanBlobIds();
		if (!ids) {
			report.warnings.push_back("pack " + packFile.name + " has no index and cannot be read (" +
						  ids.error().message + "): left alone");
			continue;
		}
		size_t needed = size_t(std::count_if(ids->begin(), ids->end(), [&](const ChunkId &c) {
			auto m = marks.find(c);
			return m != marks.end() && !m->second.indexed;
		}));
		if (needed) {
			report.warnings.push_back("pack " + packFile.name + " has no index but holds " + std::to_string(needed) +
						  " chunks that snapshots reference and no pack index names: left alone "
						  "(re-index it from its blob headers)");
			continue;
		}
		plan.removals.push_back(Removal{id, packFile, std::nullopt, ids->size()});
	}
	return {};
}

Result<void> applyRemovals(Store &store, const Lease &lease, const GcOptions &opts, const SweepPlan &plan,
			   GcReport &report, std::vector<PackId> &gone)
{
	std::vector<const FileInfo *> indexes, packs;
	for (const Removal &r : plan.removals) {
		if (r.index)
			indexes.push_back(&*r.index);
		packs.push_back(&r.pack);
		report.packsRemoved++;
		report.packsWithoutIndexRemoved += !r.index;
		report.chunksRemoved += r.deadChunks;
	}
	if (opts.dryRun) {
		for (const Removal &r : plan.removals)
			report.bytesRemoved += r.pack.size + (r.index ? r.index->size : 0);
		return {};
	}
	for (const Removal &r : plan.removals)
		gone.push_back(r.id);
	return removePacks(store, lease, indexes, packs, report);
}

// Everything after the mark. Packs deleted so far are added to `gone`
// even when this fails half way, so the caller can forget them; packs whose
// copy of a chunk was kept instead of a deleted pack's, to `holders`.
Result<void> sweep(Store &store, const Lease &lease, const GcOptions &opts, Marks &marks, GcReport &report,
		   std::vector<PackId> &gone, std::vector<PackId> &holders)
{
	VS_ASSIGN(auto now, store.backend().now());
	auto grace = std::max(std::chrono::seconds(0), opts.grace);
	std::function<bool(const FileInfo &)> old = [&](const FileInfo &f) { return now - f.modified > grace; };

	VS_ASSIGN(auto found, scanPacks(store.backend()));
	SweepPlan plan;
	VS_TRY(classify(store, opts, marks, report, old, found, plan));
	VS_TRY(classifyWithoutIndex(store, marks, report, old, plan));
	for (const auto &[id, m] : marks)
		report.chunksMissing += !m.indexed;

	// Rewrites first: if they fail (disk full), nothing has been lost yet.
	Repacker repacker(store, lease, report, opts.dryRun, marks, plan.kept, gone, holders);
	for (const Repack &r : plan.repacks)
		VS_TRY(repacker.add(r));
	VS_TRY(repacker.flush());
	VS_TRY(applyRemovals(store, lease, opts, plan, report, gone));

	// Leftovers of writers that died (or were dropped) mid-write. Not the
	// newest, whatever the grace: a lease being taken right now writes the
	// one object that goes on while gc holds the store (found by the race
	// in shared_store_test with no grace at all).
	VS_ASSIGN(auto swept, store.backend().sweepPartial(std::max(grace, kYoungestPartial), opts.dryRun));
	report.tmpFilesRemoved += swept.objects;
	report.bytesRemoved += swept.bytes;
	return {};
}

} // namespace

Result<GcReport> collectGarbage(Store &store, const GcOptions &opts)
{
	// A dry run takes the lease too, so that what it reports is what a
	// real run would do.
	VS_ASSIGN(auto lease, store.lease(Lease::Kind::Exclusive, opts.dryRun ? "gc --dry-run" : "gc"));
	if (!opts.dryRun)
		VS_TRY(removeStaleLeases(store.backend(), store.options().lease));
	GcReport report;
	report.dryRun = opts.dryRun;
	HeldSet held;
	VS_ASSIGN(auto marks, mark(store, opts, report, held));
	// Out of the Recycle Bin for good: unmarked, their chunks go below.
	report.recycledSnapshotsRemoved = held.expiredBinEntries.size();
	for (const std::string &id : held.expiredBinEntries)
		if (!opts.dryRun)
			VS_TRY(store.removeRecord(kRecycleBinRecords, id));
	// Lock-snapshot takes a shared lease: none can renew these meanwhile.
	for (const std::string &id : held.expiredLocks)
		if (!opts.dryRun)
			VS_TRY(store.removeRecord(kSnapshotLockRecords, id));
	// An export whose nbdkit stopped renewing its record (export_records.h).
	for (const std::string &id : held.expiredExports)
		if (!opts.dryRun)
			VS_TRY(store.removeRecord(kSnapshotExportRecords, id));

	std::vector<PackId> gone, holders;
	auto swept = sweep(store, *lease, opts, marks, report, gone, holders);
	// Whatever happened, the map must not name a deleted pack; refresh()
	// then learns the packs repacking wrote. The map holds one place per
	// chunk: where it named a deleted pack for a chunk that a pack which
	// stays holds too, forgetting that pack as well makes refresh() learn
	// it anew, and with it that chunk.
	store.forgetPacks(gone);
	store.forgetPacks(holders);
	auto refreshed = store.refresh();
	if (!swept)
		return std::unexpected(swept.error());
	// What gc did is done and safe; the map only lacks the new packs
	// (reads of their chunks refresh again, writers store them anew).
	if (!refreshed)
		report.warnings.push_back("the store's chunk map was not refreshed: " + refreshed.error().toString());
	report.bytesFreed = report.bytesRemoved > report.bytesWritten ? report.bytesRemoved - report.bytesWritten : 0;
	return report;
}

} // namespace virtsnap::store
