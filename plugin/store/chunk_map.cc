#include "chunk_map.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <queue>

#include "core/file_util.h"
#include "core/unique_fd.h"

namespace virtsnap::store {

// One entry of a run's file, in this host's byte order: the file never
// leaves the process that wrote it. Not in the anonymous namespace: the
// map's own classes hold entries, and g++ warns when a class with linkage
// does so in a unity build.
namespace chunk_map_file {
struct Entry {
	ChunkId id;
	uint32_t pack;
	uint32_t length;
	uint64_t offset;
};
static_assert(sizeof(Entry) == 48);
} // namespace chunk_map_file
using chunk_map_file::Entry;

namespace {

// Entries per block: one key in memory per block, and a lookup reads one
// or two blocks (3 KiB each).
constexpr size_t kBlockEntries = 64;
constexpr size_t kBlockBytes = kBlockEntries * sizeof(Entry);
// Runs of one level merged at once.
constexpr size_t kFanIn = 8;
// Buffers of the sequential writes and of each run read by a merge.
constexpr size_t kStreamEntries = 1365; // 64 KiB

// The first 8 bytes of an id as a number that orders like the id.
uint64_t prefixOf(const ChunkId &id)
{
	uint64_t p = 0;
	for (int i = 0; i < 8; i++)
		p = (p << 8) | id[i];
	return p;
}

uint64_t wordAt(const ChunkId &id, size_t at)
{
	uint64_t w;
	std::memcpy(&w, id.data() + at, sizeof(w));
	return w;
}

Result<UniqueFd> unlinkedFile(const std::filesystem::path &dir)
{
	std::filesystem::path base = dir.empty() ? std::filesystem::temp_directory_path() : dir;
	// Unnamed from the start, and linkable: the cache names the runs it
	// keeps without copying them.
	UniqueFd tmp(::open(base.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
	if (tmp.isValid())
		return tmp;
	std::string name = (base / "virtsnap-chunk-map-XXXXXX").string();
	UniqueFd fd(::mkostemp(name.data(), O_CLOEXEC));
	if (!fd.isValid())
		return failErrno("create a chunk map file in " + base.string(), errno);
	::unlink(name.c_str());
	return fd;
}

} // namespace

// A sorted run of entries in an unlinked file, with the first id prefix of
// each block and a Bloom filter (4 probes, the id being a keyed hash
// already) in memory.
class ChunkMap::Run
{
public:
	static Result<std::unique_ptr<Run>> create(const std::filesystem::path &dir, uint64_t capacity,
						   uint32_t bitsPerEntry)
	{
		VS_ASSIGN(UniqueFd fd, unlinkedFile(dir));
		std::unique_ptr<Run> run(new Run(std::move(fd)));
		uint64_t bits = std::max<uint64_t>(64, capacity * bitsPerEntry);
		run->filter_.assign((bits + 63) / 64, 0);
		run->buffer_.reserve(kStreamEntries);
		return run;
	}

	// Entries come in id order.
	Result<void> append(const Entry &e)
	{
		remember(e);
		buffer_.push_back(e);
		if (buffer_.size() == kStreamEntries)
			return flush();
		return {};
	}

	// A run saved before: its file read whole, to check it against what
	// was saved and to build the filter and keys.
	static Result<std::unique_ptr<Run>> load(UniqueFd fd, const RunFile &saved, uint32_t bitsPerEntry,
						 uint32_t packs)
	{
		struct stat st;
		if (::fstat(fd.get(), &st) != 0)
			return failErrno("stat a saved chunk map run", errno);
		if (uint64_t(st.st_size) != saved.entries * sizeof(Entry))
			return fail(errc::kCorrupt, "a saved chunk map run has " + std::to_string(st.st_size) +
							    " bytes, not " + std::to_string(saved.entries) + " entries");
		uint64_t bits = std::max<uint64_t>(64, saved.entries * bitsPerEntry);
		std::unique_ptr<Run> run(new Run(std::move(fd)));
		run->filter_.assign((bits + 63) / 64, 0);
		run->level_ = saved.level;
		std::vector<Entry> buffer(kStreamEntries);
		ChunkId previous{};
		for (uint64_t done = 0; done < saved.entries;) {
			size_t n = size_t(std::min<uint64_t>(kStreamEntries, saved.entries - done));
			std::span<uint8_t> bytes((uint8_t *)buffer.data(), n * sizeof(Entry));
			VS_TRY(preadAll(run->fd_.get(), bytes, done * sizeof(Entry)));
			run->checksum_ = checksumOf(bytes, run->checksum_);
			for (size_t i = 0; i < n; i++) {
				const Entry &e = buffer[i];
				if (e.pack >= packs || std::memcmp(previous.data(), e.id.data(), 32) > 0)
					return fail(errc::kCorrupt, "a saved chunk map run is out of order");
				run->remember(e);
				previous = e.id;
			}
			done += n;
		}
		if (run->checksum_ != saved.checksum)
			return fail(errc::kCorrupt, "a saved chunk map run does not match its checksum");
		run->fences_.shrink_to_fit();
		return run;
	}

	Result<void> finish()
	{
		VS_TRY(flush());
		buffer_ = {};
		fences_.shrink_to_fit();
		return {};
	}

	uint64_t count() const { return count_; }
	int fd() const { return fd_.get(); }
	uint64_t checksum() const { return checksum_; }
	// Runs of level n were merged n times.
	int level() const { return level_; }
	void setLevel(int level) { level_ = level; }

	// Every entry of `id`, in file order.
	Result<void> find(const ChunkId &id, std::vector<Location> &out) const
	{
		if (!mayHold(id))
			return {};
		uint64_t prefix = prefixOf(id);
		size_t block = size_t(std::lower_bound(fences_.begin(), fences_.end(), prefix) - fences_.begin());
		// Entries of this prefix may end the block before the first whose
		// key is at least it.
		block = block ? block - 1 : 0;
		Entry entries[2 * kBlockEntries];
		for (uint64_t first = block * kBlockEntries; first < count_;) {
			size_t n = size_t(std::min<uint64_t>(2 * kBlockEntries, count_ - first));
			std::span<uint8_t> bytes((uint8_t *)entries, n * sizeof(Entry));
			VS_TRY(preadAll(fd_.get(), bytes, first * sizeof(Entry)));
			for (size_t i = 0; i < n; i++) {
				int c = std::memcmp(entries[i].id.data(), id.data(), id.size());
				if (c > 0)
					return {};
				if (c == 0)
					out.push_back({entries[i].pack, entries[i].length, entries[i].offset});
			}
			first += n;
		}
		return {};
	}

	// Reads the run from the start, a buffer at a time (merges).
	class Reader
	{
	public:
		explicit Reader(const Run &run) : run_(run) {}
		// False at the end.
		Result<bool> next(Entry &e)
		{
			if (at_ == buffer_.size()) {
				uint64_t left = run_.count_ - read_;
				if (!left)
					return false;
				buffer_.resize(size_t(std::min<uint64_t>(kStreamEntries, left)));
				std::span<uint8_t> bytes((uint8_t *)buffer_.data(), buffer_.size() * sizeof(Entry));
				VS_TRY(preadAll(run_.fd_.get(), bytes, read_ * sizeof(Entry)));
				read_ += buffer_.size();
				at_ = 0;
			}
			e = buffer_[at_++];
			return true;
		}

	private:
		const Run &run_;
		std::vector<Entry> buffer_;
		size_t at_ = 0;
		uint64_t read_ = 0;
	};

private:
	explicit Run(UniqueFd fd) : fd_(std::move(fd)) {}

	// Into the filter and the block keys.
	void remember(const Entry &e)
	{
		if (count_ % kBlockEntries == 0)
			fences_.push_back(prefixOf(e.id));
		uint64_t bits = filter_.size() * 64;
		for (uint64_t i = 0, h = wordAt(e.id, 8), step = wordAt(e.id, 16) | 1; i < 4; i++, h += step)
			filter_[(h % bits) / 64] |= 1ull << (h % 64);
		count_++;
	}

	bool mayHold(const ChunkId &id) const
	{
		uint64_t bits = filter_.size() * 64;
		for (uint64_t i = 0, h = wordAt(id, 8), step = wordAt(id, 16) | 1; i < 4; i++, h += step)
			if (!(filter_[(h % bits) / 64] & (1ull << (h % 64))))
				return false;
		return true;
	}

	Result<void> flush()
	{
		std::span<const uint8_t> bytes((const uint8_t *)buffer_.data(), buffer_.size() * sizeof(Entry));
		checksum_ = checksumOf(bytes, checksum_);
		VS_TRY(writeAll(fd_.get(), bytes));
		buffer_.clear();
		return {};
	}

	UniqueFd fd_;
	uint64_t count_ = 0;
	uint64_t checksum_ = 0;
	int level_ = 0;
	std::vector<uint64_t> fences_;
	std::vector<uint64_t> filter_;
	std::vector<Entry> buffer_;
};

ChunkMap::ChunkMap(Options options) : options_(std::move(options)) {}

ChunkMap::~ChunkMap() = default;

uint64_t ChunkMap::entries() const
{
	uint64_t n = table_.size();
	for (const auto &run : runs_)
		n += run->count();
	return n;
}

Result<void> ChunkMap::add(uint32_t pack, std::span<const PackEntry> entries)
{
	for (const PackEntry &e : entries)
		table_.emplace(e.id, Location{pack, e.length, e.offset});
	if (table_.size() >= options_.tableEntries)
		VS_TRY(flushTable());
	return {};
}

void ChunkMap::forget(const std::vector<uint32_t> &packs)
{
	if (packs.empty())
		return;
	for (uint32_t pack : packs) {
		if (pack >= dead_.size())
			dead_.resize(pack + 1);
		dead_[pack] = true;
	}
	// The runs keep their entries until a merge drops them; find() skips them.
	std::erase_if(table_, [&](const auto &entry) { return !alive(entry.second.pack); });
}

Result<std::optional<ChunkMap::Location>> ChunkMap::find(const ChunkId &id) const
{
	// The copy in the pack learnt first, as the map always answered: gc
	// relies on where a chunk was found staying put while that pack does.
	std::optional<Location> best;
	auto consider = [&](const Location &l) {
		if (alive(l.pack) && (!best || l.pack < best->pack))
			best = l;
	};
	auto [begin, end] = table_.equal_range(id);
	for (auto it = begin; it != end; ++it)
		consider(it->second);
	std::vector<Location> found;
	for (const auto &run : runs_)
		VS_TRY(run->find(id, found));
	for (const Location &l : found)
		consider(l);
	return best;
}

Result<void> ChunkMap::flushTable()
{
	std::vector<Entry> sorted;
	sorted.reserve(table_.size());
	for (const auto &[id, l] : table_)
		sorted.push_back({id, l.pack, l.length, l.offset});
	std::sort(sorted.begin(), sorted.end(), [](const Entry &a, const Entry &b) {
		int c = std::memcmp(a.id.data(), b.id.data(), 32);
		return c < 0 || (c == 0 && a.pack < b.pack);
	});
	VS_ASSIGN(auto run, Run::create(options_.dir, sorted.size(), options_.filterBitsPerEntry));
	for (const Entry &e : sorted)
		VS_TRY(run->append(e));
	VS_TRY(run->finish());
	runs_.push_back(std::move(run));
	table_ = {};
	// Size-tiered: kFanIn runs of one level become one of the next, so
	// an entry is rewritten about log8(entries / tableEntries) times (3 at
	// 50 M) and there are at most 7 runs a level.
	for (;;) {
		size_t n = runs_.size();
		if (n < kFanIn)
			break;
		int level = runs_.back()->level();
		bool full = std::all_of(runs_.end() - long(kFanIn), runs_.end(),
					[&](const auto &r) { return r->level() == level; });
		if (!full)
			break;
		VS_TRY(mergeRuns(n - kFanIn, level + 1));
	}
	return {};
}

Result<void> ChunkMap::compact()
{
	size_t first = runs_.size();
	uint64_t newer = 0;
	while (first > 0 && (first == runs_.size() || runs_[first - 1]->count() <= kFanIn * newer))
		newer += runs_[--first]->count();
	if (runs_.size() - first < 2)
		return {};
	return mergeRuns(first, runs_[first]->level() + 1);
}

Result<std::vector<ChunkMap::RunFile>> ChunkMap::runFiles()
{
	if (!table_.empty())
		VS_TRY(flushTable());
	std::vector<RunFile> files;
	for (const auto &run : runs_)
		files.push_back({run->fd(), run->count(), run->level(), run->checksum()});
	return files;
}

Result<void> ChunkMap::adopt(UniqueFd fd, const RunFile &saved, uint32_t packs)
{
	VS_ASSIGN(auto run, Run::load(std::move(fd), saved, options_.filterBitsPerEntry, packs));
	runs_.push_back(std::move(run));
	return {};
}

uint64_t ChunkMap::checksumOf(std::span<const uint8_t> bytes, uint64_t seed)
{
	// Not a cryptographic hash: it finds a cache file that a crash, a full
	// disk or a stray write damaged, at memory speed (the file is the
	// host's own, in a 0700 directory).
	// Word by word, so that the sum of a file does not depend on the
	// buffers it was written or read in (whole words each).
	uint64_t h = seed;
	size_t i = 0;
	for (; i + 8 <= bytes.size(); i += 8) {
		uint64_t w;
		std::memcpy(&w, bytes.data() + i, 8);
		h = std::rotl(h ^ (w * 0xbf58476d1ce4e5b9ull), 31) * 0x94d049bb133111ebull + 0x9e3779b97f4a7c15ull;
	}
	for (; i < bytes.size(); i++)
		h = std::rotl(h ^ bytes[i], 8) * 0x94d049bb133111ebull + 0x9e3779b97f4a7c15ull;
	return h;
}

Result<void> ChunkMap::mergeRuns(size_t first, int level)
{
	uint64_t capacity = 0;
	std::vector<Run::Reader> readers;
	for (size_t i = first; i < runs_.size(); i++) {
		capacity += runs_[i]->count();
		readers.emplace_back(*runs_[i]);
	}
	VS_ASSIGN(auto merged, Run::create(options_.dir, capacity, options_.filterBitsPerEntry));
	// By id, then by run: the older run's entry first, as find() meets them.
	using Head = std::pair<Entry, size_t>;
	auto later = [](const Head &a, const Head &b) {
		int c = std::memcmp(a.first.id.data(), b.first.id.data(), 32);
		return c > 0 || (c == 0 && a.second > b.second);
	};
	std::priority_queue<Head, std::vector<Head>, decltype(later)> heads(later);
	for (size_t i = 0; i < readers.size(); i++) {
		Entry e;
		VS_ASSIGN(bool more, readers[i].next(e));
		if (more)
			heads.push({e, i});
	}
	while (!heads.empty()) {
		auto [e, i] = heads.top();
		heads.pop();
		if (alive(e.pack))
			VS_TRY(merged->append(e));
		VS_ASSIGN(bool more, readers[i].next(e));
		if (more)
			heads.push({e, i});
	}
	VS_TRY(merged->finish());
	merged->setLevel(level);
	readers.clear();
	runs_.resize(first);
	runs_.push_back(std::move(merged));
	return {};
}

} // namespace virtsnap::store
