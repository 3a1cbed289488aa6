#include "gc.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/cancel.h"
#include "core/file_util.h"

namespace virtsnap::store {

namespace {

struct FileInfo {
	fs::path path;
	uint64_t size = 0;
	int64_t mtimeNs = 0;
};

// What the packs directory holds under one pack id.
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

// Referenced ids; the flag says whether some pack index names the id.
using Marks = std::unordered_map<ChunkId, bool, ChunkIdHash>;

int64_t nowNs()
{
	struct timespec ts;
	::clock_gettime(CLOCK_REALTIME, &ts);
	return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// nullopt for anything but a regular file (symlinks are not followed:
// gc only deletes what the store itself wrote).
std::optional<FileInfo> statRegular(const fs::path &path)
{
	struct stat st;
	if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
		return std::nullopt;
	return FileInfo{path, uint64_t(st.st_size), int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

bool isPackName(const std::string &s)
{
	return s.size() == 32 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::optional<PackId> packIdOf(const std::string &name)
{
	auto bytes = fromHex(name);
	if (!bytes || bytes->size() != 16)
		return std::nullopt;
	PackId id;
	std::memcpy(id.data(), bytes->data(), 16);
	return id;
}

std::unexpected<Error> interrupted()
{
	return fail(errc::kIncorrectState, "gc interrupted by signal " + std::to_string(cancelSignal()));
}

// Mark: every manifest, its index pages and every id they name. Anything
// unreadable stops gc, since what it references is then unknown.
Result<Marks> mark(Store &store, GcReport &report)
{
	auto manifests = store.listManifests();
	if (!manifests)
		return fail(manifests.error().code, "gc cannot read every manifest (" + manifests.error().message +
							    "); nothing was removed");
	auto codec = store.newCodec();
	Marks marks;
	// Unchanged pages are shared by the snapshots of a volume: read once.
	std::unordered_set<ChunkId, ChunkIdHash> pagesRead;
	for (const Manifest &m : *manifests) {
		if (cancelRequested())
			return interrupted();
		report.snapshots++;
		for (size_t p = 0; p < m.indexPages.size(); p++) {
			const ChunkId &pageId = m.indexPages[p];
			if (isZeroId(pageId))
				continue;
			marks.emplace(pageId, false);
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
					marks.emplace(id, false);
			}
		}
	}
	report.chunksReferenced = marks.size();
	return marks;
}

// Pack files and indexes by pack id, found wherever Store::refresh would
// find them. Temporary files and anything else are not listed here.
Result<std::map<std::string, PackFiles>> scanPacks(const fs::path &packsDir)
{
	std::map<std::string, PackFiles> out;
	std::error_code ec;
	if (!fs::exists(packsDir, ec))
		return out;
	for (auto it = fs::recursive_directory_iterator(packsDir, ec); !ec && it != fs::end(it); it.increment(ec)) {
		const fs::path &p = it->path();
		std::string name = p.filename().string();
		if (name.find(".tmp-") != std::string::npos)
			continue;
		std::string ext = p.extension().string();
		std::string stem = p.stem().string();
		if ((ext != ".pack" && ext != ".idx") || !isPackName(stem))
			continue;
		auto info = statRegular(p);
		if (!info)
			continue;
		PackFiles &f = out[stem];
		(ext == ".pack" ? f.packs : f.indexes).push_back(*info);
	}
	if (ec)
		return fail(errc::kIo, "list " + packsDir.string() + ": " + ec.message());
	return out;
}

Result<PackIndex> readIndex(const Store &store, const std::string &name, const fs::path &path)
{
	VS_ASSIGN(auto sealed, readFile(path));
	VS_ASSIGN(auto plain, openObject(ObjectType::PackIndex, store.domain().encKey, name, sealed));
	VS_ASSIGN(auto index, parsePackIndex(plain));
	if (toHex(index.packId) != name)
		return fail(errc::kCorrupt, "it names pack " + toHex(index.packId));
	return index;
}

// The ids a pack's blob headers name, from the start up to the first
// header that does not parse (what lies beyond cannot be found without an
// index either).
Result<std::vector<ChunkId>> scanBlobIds(const fs::path &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd.isValid())
		return failErrno("open " + path.string(), errno);
	struct stat st;
	if (::fstat(fd.get(), &st) != 0)
		return failErrno("stat " + path.string(), errno);
	std::vector<ChunkId> ids;
	uint8_t header[kBlobHeaderSize];
	for (uint64_t off = kPackHeaderSize; off + kBlobHeaderSize <= uint64_t(st.st_size);) {
		if (auto r = preadAll(fd.get(), header, off); !r)
			return std::unexpected(r.error());
		auto h = parseBlobHeader(header);
		if (!h)
			break;
		ids.push_back(h->id);
		off += h->blobLength();
	}
	return ids;
}

// Unlinks and accounts; a file already gone is not an error (a run that
// crashed may have removed it).
Result<void> removeFile(const FileInfo &f, GcReport &report)
{
	if (::unlink(f.path.c_str()) != 0) {
		if (errno == ENOENT)
			return {};
		return failErrno("remove " + f.path.string(), errno);
	}
	report.bytesRemoved += f.size;
	return {};
}

Result<void> fsyncDirs(const std::set<fs::path> &dirs)
{
	for (const fs::path &d : dirs)
		VS_TRY(fsyncDir(d));
	return {};
}

// Index first, then the pack (FORMAT.md): a crash in between leaves a
// pack without index, which nothing reads and a later gc removes; the
// other order would leave an index naming chunks that no longer exist,
// and writers would dedup against them.
Result<void> removePacks(const std::vector<const FileInfo *> &indexes, const std::vector<const FileInfo *> &packs,
			 GcReport &report)
{
	std::set<fs::path> dirs;
	for (const FileInfo *f : indexes) {
		VS_TRY(removeFile(*f, report));
		dirs.insert(f->path.parent_path());
	}
	VS_TRY(fsyncDirs(dirs));
	dirs.clear();
	for (const FileInfo *f : packs) {
		VS_TRY(removeFile(*f, report));
		dirs.insert(f->path.parent_path());
	}
	return fsyncDirs(dirs);
}

// Copies the live blobs of sparse packs, verbatim (a blob is
// self-contained: header, nonce and tag travel with it, so ids and
// encryption stay), into new packs written as any writer writes them. An
// old pack is deleted only once every blob it gave is in a durable pack.
class Repacker
{
public:
	Repacker(Store &store, GcReport &report, bool dryRun, std::vector<PackId> &gone)
		: store_(store), report_(report), dryRun_(dryRun), gone_(gone)
	{
	}

	Result<void> add(const Repack &r)
	{
		UniqueFd fd;
		if (!dryRun_) {
			fd.reset(::open(r.pack.path.c_str(), O_RDONLY | O_CLOEXEC));
			if (!fd.isValid()) {
				report_.warnings.push_back("pack " + toHex(r.id) + " cannot be opened (" +
							   std::strerror(errno) + "): not repacked");
				return {};
			}
		}
		Bytes blob;
		for (const PackEntry &e : r.live) {
			if (cancelRequested())
				return interrupted();
			if (copied_.count(e.id))
				continue;
			if (size_ > 0 && size_ + e.length > kPackTargetSize)
				VS_TRY(flush());
			if (!dryRun_) {
				blob.resize(e.length);
				auto read = preadAll(fd.get(), blob, e.offset);
				auto h = read ? parseBlobHeader(blob) : Result<BlobHeader>(std::unexpected(read.error()));
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
					VS_ASSIGN(auto w, PackWriter::create(store_.dir()));
					writer_.emplace(std::move(w));
				}
				VS_TRY(writer_->append(e.id, e.type, e.flags, e.rawLength, blob));
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
				for (const fs::path &p : {packPath(store_.dir(), index->packId),
							  packIndexPath(store_.dir(), index->packId)})
					if (auto f = statRegular(p))
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
			VS_TRY(removePacks(indexes, packs, report_));
		} else {
			for (const Repack *r : done_)
				report_.bytesRemoved += r->pack.size + r->index.size;
		}
		done_.clear();
		return {};
	}

private:
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
	GcReport &report_;
	bool dryRun_;
	std::vector<PackId> &gone_;
	std::optional<PackWriter> writer_;
	uint64_t size_ = 0; // of the pack being written, 0 when there is none
	uint64_t count_ = 0;
	std::vector<const Repack *> done_;
	std::unordered_set<ChunkId, ChunkIdHash> copied_;
};

// Everything after the mark. Packs deleted so far are added to `gone`
// even when this fails half way, so the caller can forget them.
Result<void> sweep(Store &store, const GcOptions &opts, Marks &marks, GcReport &report, std::vector<PackId> &gone)
{
	const int64_t now = nowNs();
	const int64_t graceNs = std::max<int64_t>(0, opts.grace.count()) * 1000000000;
	auto old = [&](const FileInfo &f) { return now - f.mtimeNs > graceNs; };

	VS_ASSIGN(auto found, scanPacks(store.dir() / "packs"));

	std::vector<Removal> removals;
	std::vector<Repack> repacks;
	std::vector<std::string> withoutIndex;
	for (auto &[name, files] : found) {
		if (cancelRequested())
			return interrupted();
		if (files.packs.size() > 1 || files.indexes.size() > 1) {
			report.warnings.push_back("pack " + name + " has more than one file of a kind: left alone");
			continue;
		}
		if (files.packs.empty()) {
			// Never left by a writer or by gc (the pack is always
			// there first and gone last): damage, for a human to see.
			report.warnings.push_back("pack index " + files.indexes[0].path.string() +
						  " has no pack: left alone (run virtsnap verify)");
			continue;
		}
		const FileInfo &packFile = files.packs[0];
		PackId id = *packIdOf(name);
		if (files.indexes.empty()) {
			withoutIndex.push_back(name);
			continue;
		}
		const FileInfo &indexFile = files.indexes[0];
		auto index = readIndex(store, name, indexFile.path);
		if (!index) {
			report.warnings.push_back("pack index " + indexFile.path.string() + " cannot be read (" +
						  index.error().message + "): pack left alone");
			continue;
		}
		uint64_t liveBytes = 0, deadBytes = 0, deadChunks = 0;
		std::vector<PackEntry> live;
		for (const PackEntry &e : index->entries) {
			auto m = marks.find(e.id);
			if (m != marks.end()) {
				m->second = true;
				liveBytes += e.length;
				live.push_back(e);
			} else {
				deadBytes += e.length;
				deadChunks++;
			}
		}
		report.chunksUnreferenced += deadChunks;
		if (deadChunks == 0)
			continue;
		bool wholeDead = live.empty();
		bool sparse = !wholeDead && double(deadBytes) >= opts.repackThreshold * double(liveBytes + deadBytes);
		if (!wholeDead && !sparse)
			continue;
		if (!old(packFile) || !old(indexFile)) {
			report.packsSpared++;
			continue;
		}
		if (wholeDead) {
			removals.push_back(Removal{id, packFile, indexFile, deadChunks});
		} else {
			std::sort(live.begin(), live.end(),
				  [](const PackEntry &a, const PackEntry &b) { return a.offset < b.offset; });
			repacks.push_back(Repack{id, packFile, indexFile, std::move(live), deadChunks});
		}
	}

	// Packs without index: a writer died between the pack's rename and its
	// index's. Nothing can read them; still, one that holds a chunk a
	// manifest needs (the index lost some other way) is kept, for a human
	// to re-index from its blob headers.
	for (const std::string &name : withoutIndex) {
		if (cancelRequested())
			return interrupted();
		const FileInfo &packFile = found[name].packs[0];
		if (!old(packFile)) {
			report.packsSpared++;
			continue;
		}
		auto ids = scanBlobIds(packFile.path);
		if (!ids) {
			report.warnings.push_back("pack " + packFile.path.string() + " has no index and cannot be read (" +
						  ids.error().message + "): left alone");
			continue;
		}
		size_t needed = size_t(std::count_if(ids->begin(), ids->end(), [&](const ChunkId &c) { return marks.count(c) != 0; }));
		if (needed) {
			report.warnings.push_back("pack " + packFile.path.string() + " has no index but holds " +
						  std::to_string(needed) +
						  " chunks that snapshots reference: left alone (re-index it from its "
						  "blob headers)");
			continue;
		}
		removals.push_back(Removal{*packIdOf(name), packFile, std::nullopt, ids->size()});
	}

	for (const auto &[id, seen] : marks)
		report.chunksMissing += !seen;

	// Rewrites first: if they fail (disk full), nothing has been lost yet.
	Repacker repacker(store, report, opts.dryRun, gone);
	for (const Repack &r : repacks)
		VS_TRY(repacker.add(r));
	VS_TRY(repacker.flush());

	std::vector<const FileInfo *> indexes, packs;
	for (const Removal &r : removals) {
		if (r.index)
			indexes.push_back(&*r.index);
		packs.push_back(&r.pack);
		report.packsRemoved++;
		report.packsWithoutIndexRemoved += !r.index;
		report.chunksRemoved += r.deadChunks;
	}
	if (opts.dryRun) {
		for (const Removal &r : removals)
			report.bytesRemoved += r.pack.size + (r.index ? r.index->size : 0);
	} else {
		for (const Removal &r : removals)
			gone.push_back(r.id);
		VS_TRY(removePacks(indexes, packs, report));
	}

	// Leftovers of writers that died (or were dropped) mid-write,
	// anywhere under the store.
	std::vector<FileInfo> temps;
	std::error_code ec;
	for (auto it = fs::recursive_directory_iterator(store.dir(), fs::directory_options::skip_permission_denied, ec);
	     !ec && it != fs::end(it); it.increment(ec)) {
		if (it->path().filename().string().find(".tmp-") == std::string::npos)
			continue;
		if (auto f = statRegular(it->path()); f && old(*f))
			temps.push_back(*f);
	}
	if (ec)
		return fail(errc::kIo, "list " + store.dir().string() + ": " + ec.message());
	std::set<fs::path> dirs;
	for (const FileInfo &f : temps) {
		report.tmpFilesRemoved++;
		if (opts.dryRun) {
			report.bytesRemoved += f.size;
			continue;
		}
		VS_TRY(removeFile(f, report));
		dirs.insert(f.path.parent_path());
	}
	return fsyncDirs(dirs);
}

} // namespace

Result<GcReport> collectGarbage(Store &store, const GcOptions &opts)
{
	VS_TRY(store.lockExclusive());
	struct Unlock {
		Store &store;
		~Unlock() { store.unlockExclusive(); }
	} unlock{store};

	GcReport report;
	report.dryRun = opts.dryRun;
	VS_ASSIGN(auto marks, mark(store, report));

	std::vector<PackId> gone;
	auto swept = sweep(store, opts, marks, report, gone);
	// Whatever happened, the map must not name a deleted pack; refresh()
	// then learns the packs repacking wrote.
	store.forgetPacks(gone);
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
