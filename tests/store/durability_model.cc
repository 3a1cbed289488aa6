#include "durability_model.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <optional>

#include "core/bytes.h"
#include "core/file_util.h"

namespace virtsnap::store::test {

namespace {

namespace fs = std::filesystem;

// What an entry or a sync is about. A directory is its inode; a file is
// also its size, mtime and birth time, so that an inode number a later file
// reuses is not taken for the earlier file (the store never changes a file
// once synced, so these stay put from its sync on).
struct Identity {
	dev_t dev = 0;
	ino_t ino = 0;
	bool dir = false;
	uint64_t size = 0;
	int64_t mtimeNs = 0;
	int64_t btimeNs = 0;

	bool operator==(const Identity &) const = default;
};

int64_t nsOf(const struct statx_timestamp &t)
{
	return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// Regular files and directories only: nothing else is part of a store.
std::optional<Identity> identify(int dirfd, const char *path, int flags)
{
	struct statx st;
	if (::statx(dirfd, path, flags | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_BTIME, &st) != 0)
		return std::nullopt;
	if (!S_ISDIR(st.stx_mode) && !S_ISREG(st.stx_mode))
		return std::nullopt;
	Identity id;
	id.dev = makedev(st.stx_dev_major, st.stx_dev_minor);
	id.ino = st.stx_ino;
	id.dir = S_ISDIR(st.stx_mode);
	if (!id.dir) {
		id.size = st.stx_size;
		id.mtimeNs = nsOf(st.stx_mtime);
		id.btimeNs = (st.stx_mask & STATX_BTIME) ? nsOf(st.stx_btime) : 0;
	}
	return id;
}

struct Entry {
	std::string name;
	Identity id;
};

// What one sync made durable: a directory's entries or a file's bytes.
struct Capture {
	size_t sync = 0; // 0: there at start(); i: the i-th sync
	Identity id;
	std::vector<Entry> entries;
	Bytes bytes;
};

struct Model {
	std::mutex mutex;
	bool recording = false;
	size_t failAfter = SIZE_MAX; // syncs beyond this many fail
	size_t attempts = 0;         // syncs under root, failed ones included
	fs::path root;
	Identity rootId;
	size_t syncs = 0;
	std::vector<Capture> captures;
	std::vector<std::string> log;
};

Model &model()
{
	static Model m;
	return m;
}

// `path` names the open file or directory (/proc/self/fd/N, or a path at
// start()); `id` is what it is.
Result<Capture> capture(const fs::path &path, const Identity &id, size_t sync)
{
	Capture c;
	c.sync = sync;
	c.id = id;
	if (!id.dir) {
		VS_ASSIGN(c.bytes, readFile(path));
		return c;
	}
	DIR *d = ::opendir(path.c_str());
	if (!d)
		return failErrno("open " + path.string(), errno);
	while (struct dirent *e = ::readdir(d)) {
		std::string name = e->d_name;
		if (name == "." || name == "..")
			continue;
		if (auto entry = identify(::dirfd(d), name.c_str(), 0))
			c.entries.push_back({name, *entry});
	}
	::closedir(d);
	return c;
}

bool under(const fs::path &path, const fs::path &root)
{
	auto rel = path.lexically_relative(root);
	return !rel.empty() && *rel.begin() != "..";
}

// Whether the sync may go on: false when it fails (the process is dead).
bool recordSync(int fd, const char *how)
{
	Model &m = model();
	std::lock_guard lock(m.mutex);
	if (!m.recording)
		return true;
	std::string proc = "/proc/self/fd/" + std::to_string(fd);
	std::error_code ec;
	fs::path path = fs::read_symlink(proc, ec);
	// A file removed since it was opened is no longer anywhere to be lost.
	if (ec || !under(path, m.root) || path.string().ends_with(" (deleted)"))
		return true;
	if (++m.attempts > m.failAfter) {
		m.log.push_back(std::string(how) + " failed (the process is dead): " +
				path.lexically_relative(m.root).string());
		return false;
	}
	auto id = identify(fd, "", AT_EMPTY_PATH);
	if (!id)
		return true;
	auto c = capture(proc, *id, m.syncs + 1);
	if (!c) {
		ADD_FAILURE_AT(__FILE__, __LINE__) << "durability model: " << c.error().toString();
		return true;
	}
	m.syncs++;
	m.captures.push_back(std::move(*c));
	m.log.push_back(std::string(how) + (id->dir ? " dir " : " ") + path.lexically_relative(m.root).string());
	return true;
}

const Capture *latest(const std::vector<Capture> &captures, const Identity &id, size_t k)
{
	for (auto it = captures.rbegin(); it != captures.rend(); ++it)
		if (it->sync <= k && it->id == id)
			return &*it;
	return nullptr;
}

Result<void> build(const std::vector<Capture> &captures, const Identity &dir, size_t k, const fs::path &out)
{
	if (::mkdir(out.c_str(), 0750) != 0)
		return failErrno("mkdir " + out.string(), errno);
	const Capture *c = latest(captures, dir, k);
	if (!c)
		return {};
	for (const Entry &e : c->entries) {
		if (e.id.dir) {
			VS_TRY(build(captures, e.id, k, out / e.name));
			continue;
		}
		const Capture *file = latest(captures, e.id, k);
		std::span<const uint8_t> bytes;
		if (file)
			bytes = file->bytes;
		VS_TRY(writeFileAtomic(out / e.name, bytes, 0640));
	}
	return {};
}

} // namespace

void DurabilityModel::start(const fs::path &root)
{
	Model &m = model();
	std::lock_guard lock(m.mutex);
	m.root = fs::canonical(root);
	m.syncs = m.attempts = 0;
	m.failAfter = SIZE_MAX;
	m.captures.clear();
	m.log.clear();
	m.rootId = *identify(AT_FDCWD, m.root.c_str(), 0);
	auto add = [&](const fs::path &p) {
		if (auto id = identify(AT_FDCWD, p.c_str(), 0)) {
			auto c = capture(p, *id, 0);
			if (c)
				m.captures.push_back(std::move(*c));
			else
				ADD_FAILURE() << "durability model: " << c.error().toString();
		}
	};
	add(m.root);
	for (const auto &entry : fs::recursive_directory_iterator(m.root))
		add(entry.path());
	m.recording = true;
}

void DurabilityModel::stop()
{
	std::lock_guard lock(model().mutex);
	model().recording = false;
}

void DurabilityModel::failSyncsAfter(size_t k)
{
	std::lock_guard lock(model().mutex);
	model().failAfter = model().attempts + k;
}

void DurabilityModel::syncAgain()
{
	std::lock_guard lock(model().mutex);
	model().failAfter = SIZE_MAX;
}

size_t DurabilityModel::syncs()
{
	std::lock_guard lock(model().mutex);
	return model().syncs;
}

std::vector<std::string> DurabilityModel::log()
{
	std::lock_guard lock(model().mutex);
	return model().log;
}

Result<void> DurabilityModel::materialize(size_t k, const fs::path &out)
{
	std::vector<Capture> captures;
	Identity root;
	{
		// Copied: building syncs files, which comes back here.
		std::lock_guard lock(model().mutex);
		captures = model().captures;
		root = model().rootId;
	}
	return build(captures, root, k, out);
}

} // namespace virtsnap::store::test

// The test binary's own fsync and fdatasync, which the store's calls reach
// before libc's (see the header). They record and do not sync: nothing a
// test writes has to survive a real power loss, what a sync would keep is
// what the model records, and real syncs were most of this binary's time.
// A descriptor that is not open still fails as it would.
namespace {

int recordedSync(int fd, const char *how)
{
	if (::fcntl(fd, F_GETFD) < 0)
		return -1;
	if (!virtsnap::store::test::recordSync(fd, how)) {
		errno = EIO;
		return -1;
	}
	return 0;
}

} // namespace

extern "C" int fsync(int fd)
{
	int saved = errno;
	int r = recordedSync(fd, "fsync");
	if (r == 0)
		errno = saved;
	return r;
}

extern "C" int fdatasync(int fd)
{
	int saved = errno;
	int r = recordedSync(fd, "fdatasync");
	if (r == 0)
		errno = saved;
	return r;
}
