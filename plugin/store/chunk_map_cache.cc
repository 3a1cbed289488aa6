#include "chunk_map_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <unordered_set>

#include "core/file_util.h"
#include "core/ids.h"

namespace virtsnap::store {

namespace {

// map: what the saved runs are, in this host's byte order (the runs are
// too: nothing here leaves the host). lock: savers hold it exclusively,
// loaders shared while they open the runs, so that no saver removes a run
// a loader is about to open.
constexpr const char *kCacheMapName = "map";
constexpr const char *kCacheLockName = "lock";
constexpr char kCacheMagic[8] = {'V', 'S', 'C', 'H', 'M', 'A', 'P', '\n'};
constexpr uint32_t kCacheVersion = 1;
constexpr uint32_t kCacheByteOrder = 0x01020304;
constexpr uint32_t kCacheEntrySize = 48;

class CacheMapWriter
{
public:
	template <typename T> void put(const T &v)
	{
		const uint8_t *p = (const uint8_t *)&v;
		bytes_.insert(bytes_.end(), p, p + sizeof(T));
	}
	void putString(const std::string &s)
	{
		put(uint32_t(s.size()));
		bytes_.insert(bytes_.end(), s.begin(), s.end());
	}
	Bytes finish()
	{
		put(ChunkMap::checksumOf(bytes_));
		return std::move(bytes_);
	}

private:
	Bytes bytes_;
};

// Reads what CacheMapWriter wrote; any read past the end fails it.
class CacheMapReader
{
public:
	explicit CacheMapReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
	template <typename T> bool get(T &v)
	{
		if (bytes_.size() - at_ < sizeof(T))
			return false;
		std::memcpy(&v, bytes_.data() + at_, sizeof(T));
		at_ += sizeof(T);
		return true;
	}
	bool getString(std::string &s)
	{
		uint32_t n;
		if (!get(n) || bytes_.size() - at_ < n)
			return false;
		s.assign((const char *)bytes_.data() + at_, n);
		at_ += n;
		return true;
	}
	size_t at() const { return at_; }

private:
	std::span<const uint8_t> bytes_;
	size_t at_ = 0;
};

struct CacheSavedRun {
	std::string name;
	ChunkMap::RunFile file;
};

struct CacheContents {
	std::vector<ChunkMapCache::Pack> packs;
	std::vector<CacheSavedRun> runs;
};

std::optional<CacheContents> parseCacheMap(std::span<const uint8_t> bytes, const std::string &storeId,
					   std::string *why)
{
	uint64_t sum;
	if (bytes.size() < sizeof(sum)) {
		*why = "it is truncated";
		return std::nullopt;
	}
	std::memcpy(&sum, bytes.data() + bytes.size() - sizeof(sum), sizeof(sum));
	if (ChunkMap::checksumOf(bytes.first(bytes.size() - sizeof(sum))) != sum) {
		*why = "it does not match its checksum";
		return std::nullopt;
	}
	CacheMapReader r(bytes.first(bytes.size() - sizeof(sum)));
	char magic[8];
	uint32_t version = 0, byteOrder = 0, entrySize = 0, packCount = 0, runCount = 0;
	std::string id;
	if (!r.get(magic) || std::memcmp(magic, kCacheMagic, 8) || !r.get(version) || !r.get(byteOrder) ||
	    !r.get(entrySize) || version != kCacheVersion || byteOrder != kCacheByteOrder ||
	    entrySize != kCacheEntrySize) {
		*why = "it has another format";
		return std::nullopt;
	}
	if (!r.getString(id) || id != storeId) {
		*why = "it is another store's";
		return std::nullopt;
	}
	CacheContents c;
	std::unordered_set<std::string> names;
	bool ok = r.get(packCount);
	for (uint32_t i = 0; ok && i < packCount; i++) {
		ChunkMapCache::Pack p;
		uint8_t forgotten = 0;
		ok = r.get(p.id) && r.get(forgotten) && forgotten <= 1;
		p.forgotten = forgotten;
		// One number a pack: a pack under two numbers would be found
		// under one and forgotten under the other.
		ok = ok && names.insert(toHex(p.id)).second;
		c.packs.push_back(p);
	}
	ok = ok && r.get(runCount);
	for (uint32_t i = 0; ok && i < runCount; i++) {
		CacheSavedRun run{};
		int32_t level = 0;
		ok = r.get(run.file.entries) && r.get(level) && r.get(run.file.checksum) && r.getString(run.name) &&
		     run.name.rfind("run-", 0) == 0 && run.name.find('/') == std::string::npos;
		run.file.level = level;
		run.file.fd = -1;
		c.runs.push_back(std::move(run));
	}
	if (!ok || r.at() != bytes.size() - sizeof(sum)) {
		*why = "it is inconsistent";
		return std::nullopt;
	}
	return c;
}

// The lock file, held in `mode` (LOCK_SH, LOCK_EX) until the fd closes.
Result<UniqueFd> lockCache(const fs::path &dir, int mode)
{
	fs::path path = dir / kCacheLockName;
	UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	if (!fd.isValid())
		return failErrno("open " + path.string(), errno);
	while (::flock(fd.get(), mode) != 0)
		if (errno != EINTR)
			return failErrno("lock " + path.string(), errno);
	return fd;
}

// A copy of a run that cannot be linked (made elsewhere, or removed by
// another saver since it was loaded).
Result<void> copyRunInto(int fd, const fs::path &path)
{
	VS_ASSIGN(TempFile tmp, TempFile::create(path, 0600));
	Bytes buffer(1 << 20);
	for (uint64_t at = 0;;) {
		ssize_t n = ::pread(fd, buffer.data(), buffer.size(), off_t(at));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return failErrno("read a chunk map run", errno);
		if (n == 0)
			break;
		VS_TRY(writeAll(tmp.fd(), std::span(buffer.data(), size_t(n))));
		at += uint64_t(n);
	}
	return tmp.commit(false);
}

} // namespace

fs::path ChunkMapCache::dirFor(const fs::path &stateDir, const std::string &storeId)
{
	return stateDir / "chunk-map" / storeId;
}

ChunkMapCache::ChunkMapCache(fs::path dir, std::string storeId) : dir_(std::move(dir)), storeId_(std::move(storeId))
{
}

std::optional<std::vector<ChunkMapCache::Pack>> ChunkMapCache::load(ChunkMap &map, std::string *why) const
{
	std::optional<CacheContents> contents;
	std::vector<UniqueFd> fds;
	{
		auto lock = lockCache(dir_, LOCK_SH);
		if (!lock) {
			*why = lock.error().message;
			return std::nullopt;
		}
		auto bytes = readFile(dir_ / kCacheMapName);
		if (!bytes) {
			*why = bytes.error().message;
			return std::nullopt;
		}
		contents = parseCacheMap(*bytes, storeId_, why);
		if (!contents)
			return std::nullopt;
		for (const CacheSavedRun &run : contents->runs) {
			fs::path path = dir_ / run.name;
			fds.emplace_back(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
			if (!fds.back().isValid()) {
				*why = "open " + path.string() + ": " + std::strerror(errno);
				return std::nullopt;
			}
		}
	}
	for (size_t i = 0; i < fds.size(); i++) {
		auto adopted = map.adopt(std::move(fds[i]), contents->runs[i].file, uint32_t(contents->packs.size()));
		if (!adopted) {
			*why = contents->runs[i].name + ": " + adopted.error().message;
			return std::nullopt;
		}
	}
	return std::move(contents->packs);
}

Result<std::string> ChunkMapCache::nameRun(int fd) const
{
	struct stat st;
	if (::fstat(fd, &st) != 0)
		return failErrno("stat a chunk map run", errno);
	// Named by its inode: a run saved before (loaded, or linked by an
	// earlier save) is found under its name and kept as it is.
	std::string name = "run-" + std::to_string(uint64_t(st.st_ino));
	struct stat named;
	if (::stat((dir_ / name).c_str(), &named) == 0 && named.st_ino == st.st_ino && named.st_dev == st.st_dev)
		return name;
	std::string proc = "/proc/self/fd/" + std::to_string(fd);
	if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, (dir_ / name).c_str(), AT_SYMLINK_FOLLOW) == 0)
		return name;
	// Not linkable, or the name taken by a file from before: a copy, under
	// a name of its own.
	static thread_local std::mt19937_64 rng{std::random_device{}()};
	name += "-" + std::to_string(rng());
	fs::path path = dir_ / name;
	if (errno == EEXIST && ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0)
		return name;
	VS_TRY(copyRunInto(fd, path));
	return name;
}

void ChunkMapCache::removeUnnamed(const std::vector<std::string> &kept) const
{
	// Under the exclusive lock: every other file is a run no saved map
	// names any more, or what a crashed saver left.
	std::unordered_set<std::string> keep(kept.begin(), kept.end());
	keep.insert(kCacheMapName);
	keep.insert(kCacheLockName);
	std::error_code ec;
	for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::end(it); it.increment(ec))
		if (!keep.count(it->path().filename().string())) {
			std::error_code ignored;
			fs::remove(it->path(), ignored);
		}
}

Result<void> ChunkMapCache::save(ChunkMap &map, const std::vector<Pack> &packs) const
{
	VS_ASSIGN(auto runs, map.runFiles());
	// Durable before any name points at them, and outside the lock: the
	// runs of a large map take a while to reach the disk.
	for (const auto &run : runs)
		if (::fsync(run.fd) != 0)
			return failErrno("fsync a chunk map run", errno);
	VS_ASSIGN(UniqueFd lock, lockCache(dir_, LOCK_EX));
	CacheMapWriter w;
	w.put(kCacheMagic);
	w.put(kCacheVersion);
	w.put(kCacheByteOrder);
	w.put(kCacheEntrySize);
	w.putString(storeId_);
	w.put(uint32_t(packs.size()));
	for (const Pack &p : packs) {
		w.put(p.id);
		w.put(uint8_t(p.forgotten));
	}
	w.put(uint32_t(runs.size()));
	std::vector<std::string> names;
	for (const auto &run : runs) {
		VS_ASSIGN(std::string name, nameRun(run.fd));
		w.put(run.entries);
		w.put(int32_t(run.level));
		w.put(run.checksum);
		w.putString(name);
		names.push_back(name);
	}
	VS_TRY(fsyncDir(dir_));
	VS_TRY(writeFileAtomic(dir_ / kCacheMapName, w.finish(), 0600));
	removeUnnamed(names);
	return {};
}

} // namespace virtsnap::store
