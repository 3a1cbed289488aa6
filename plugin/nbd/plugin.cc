// virtsnap's nbdkit plugin: serves one completed snapshot from the store,
// read-only (serve-snapshot starts it; --writable adds nbdkit's cow filter
// in front). Parameters, all names of files, never a secret:
//   store=URL key-file=PATH snapshot=snap-... [export=exp-...]
//   [s3-credentials=PATH] [timeout=SECONDS] [cache-mib=N]
//   [stats-file=PATH] (read counts, written when nbdkit stops)
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "snapshot_export.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

namespace {

using virtsnap::nbd::ExportSettings;
using virtsnap::nbd::SnapshotExport;

ExportSettings settings;
std::unique_ptr<SnapshotExport> served;

bool number(const char *value, uint64_t &out)
{
	char *end = nullptr;
	errno = 0;
	unsigned long long v = std::strtoull(value, &end, 10);
	if (errno || !*value || *end)
		return false;
	out = v;
	return true;
}

int config(const char *key, const char *value)
{
	std::string k = key;
	uint64_t n = 0;
	if (k == "store")
		settings.storeUrl = value;
	else if (k == "key-file")
		settings.keyFile = value;
	else if (k == "s3-credentials")
		settings.s3CredentialsFile = value;
	else if (k == "snapshot")
		settings.snapshotId = value;
	else if (k == "export")
		settings.exportId = value;
	else if (k == "stats-file")
		settings.statsFile = value;
	else if (k == "timeout" && number(value, n) && n > 0)
		settings.timeout = std::chrono::seconds(n);
	else if (k == "cache-mib" && number(value, n) && n > 0)
		settings.cacheBytes = size_t(n) << 20;
	else {
		nbdkit_error("virtsnap: unknown or bad parameter %s=%s", key, value);
		return -1;
	}
	return 0;
}

int configComplete()
{
	if (settings.storeUrl.empty() || settings.keyFile.empty() || settings.snapshotId.empty()) {
		nbdkit_error("virtsnap: store=, key-file= and snapshot= are needed");
		return -1;
	}
	return 0;
}

// Before nbdkit forks: what can fail is found while serve-snapshot still
// waits for nbdkit's answer.
int getReady()
{
	settings.onHoldLost = [] {
		nbdkit_error("virtsnap: the export's record in the store is gone or expired: stopping");
		nbdkit_shutdown();
	};
	auto opened = SnapshotExport::open(settings);
	if (!opened) {
		nbdkit_error("virtsnap: %s", opened.error().message.c_str());
		return -1;
	}
	served = std::move(*opened);
	served->closeStore();
	return 0;
}

int afterFork()
{
	if (auto r = served->reopenStore(); !r) {
		nbdkit_error("virtsnap: %s", r.error().message.c_str());
		return -1;
	}
	return 0;
}

void cleanup()
{
	if (served)
		served->writeStats();
	served.reset();
}

void *openConnection(int /*readonly*/)
{
	return served.get();
}

int64_t getSize(void *)
{
	return int64_t(served->size());
}

// Every connection sees one unchanging disk.
int canMultiConn(void *)
{
	return 1;
}

int canExtents(void *)
{
	return 1;
}

int pread(void *, void *buf, uint32_t count, uint64_t offset, uint32_t)
{
	auto r = served->read(offset, std::span(static_cast<uint8_t *>(buf), count));
	if (!r) {
		nbdkit_error("virtsnap: read at %llu: %s", (unsigned long long)offset, r.error().message.c_str());
		nbdkit_set_error(EIO);
		return -1;
	}
	return 0;
}

int extents(void *, uint32_t count, uint64_t offset, uint32_t flags, struct nbdkit_extents *out)
{
	bool failed = false;
	served->extents(offset, count, [&](uint64_t at, uint64_t length, bool zero) {
		if (nbdkit_add_extent(out, at, length, zero ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0) == -1) {
			failed = true;
			return false;
		}
		return !(flags & NBDKIT_FLAG_REQ_ONE);
	});
	return failed ? -1 : 0;
}

struct nbdkit_plugin makePlugin()
{
	struct nbdkit_plugin p {};
	p.name = "virtsnap";
	p.longname = "virtsnap snapshot export";
	p.description = "serves a completed virtsnap snapshot from its store, read-only";
	p.config = config;
	p.config_complete = configComplete;
	p.config_help = "store=URL key-file=PATH snapshot=ID [export=ID] [s3-credentials=PATH] [timeout=S] [cache-mib=N] [stats-file=PATH]";
	p.get_ready = getReady;
	p.after_fork = afterFork;
	p.cleanup = cleanup;
	p.open = openConnection;
	p.get_size = getSize;
	p.can_multi_conn = canMultiConn;
	p.can_extents = canExtents;
	p.pread = pread;
	p.extents = extents;
	return p;
}

struct nbdkit_plugin plugin = makePlugin();

} // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
