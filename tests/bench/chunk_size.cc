// chunk-size-bench: measures what the store's chunk size costs, so that the
// default (Store::kDefaultChunkSize) is chosen by numbers and not by habit.
// For each chunk size it takes a full snapshot of a synthetic disk through
// the real store API (zero detection, ChunkWriter::put on worker threads
// with a codec each, SnapshotIndex::save, commit, manifest), then two
// incremental snapshots after 1% of the disk changed in scattered writes of
// 4 KiB and of 64 KiB, with dirty slots marked as a dirty bitmap whose
// granularity is the chunk size would mark them. See CHUNK_SIZE.md.
//
// The disk, the writes and the data written are generated from one seed, so
// every chunk size sees the same bytes and the numbers compare.

#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <zstd.h>

#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "store/chunk_writer.h"
#include "store/manifest.h"
#include "store/snapshot_index.h"
#include "store/store.h"
#include "synthetic_data.h"

namespace {

using namespace virtsnap;
using virtsnap::bench::fillRandom;
using virtsnap::bench::fillText;
using virtsnap::bench::Rng;
namespace fs = std::filesystem;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr double kTiB = double(1ull << 40);

struct Options {
	uint64_t diskMib = 512;
	std::vector<uint32_t> sizesKib{16, 32, 64, 128, 256, 1024};
	fs::path dir = "/tmp";
	store::Compression compression; // the stores' (init --compression)
	// The engine runs one worker per hardware thread; so does the bench.
	unsigned threads = std::max(1u, std::thread::hardware_concurrency());
	unsigned repeat = 3;
	uint64_t seed = 1;
	double changedPercent = 1.0;
};

void usage(FILE *out)
{
	std::fprintf(out,
		     "usage: chunk-size-bench [--disk-mib N] [--sizes 16,32,64,...] [--dir PATH] [--compression C]\n"
		     "                        [--threads N] [--repeat N] [--seed N] [--changed-percent P]\n"
		     "  --disk-mib N         synthetic disk size in MiB (default 512)\n"
		     "  --sizes LIST         chunk sizes in KiB (default 16,32,64,128,256,1024)\n"
		     "  --dir PATH           where the temporary stores go (default /tmp); removed at exit\n"
		     "  --compression C      the stores' compressor, as init --compression (default zstd:1)\n"
		     "  --threads N          worker threads putting chunks (default: hardware threads)\n"
		     "  --repeat N           runs per chunk size; times are medians (default 3)\n"
		     "  --seed N             seed of the disk and the writes (default 1)\n"
		     "  --changed-percent P  share of the disk each write workload changes (default 1)\n");
}

std::optional<uint64_t> parseNumber(const char *s)
{
	char *end = nullptr;
	errno = 0;
	unsigned long long v = std::strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		return std::nullopt;
	return v;
}

std::optional<Options> parseOptions(int argc, char **argv)
{
	Options o;
	for (int i = 1; i < argc; i++) {
		std::string arg = argv[i];
		if (arg == "--help" || arg == "-h") {
			usage(stdout);
			std::exit(0);
		}
		if (i + 1 >= argc) {
			std::fprintf(stderr, "chunk-size-bench: %s needs a value\n", arg.c_str());
			return std::nullopt;
		}
		const char *value = argv[++i];
		std::optional<uint64_t> n;
		if (arg == "--dir") {
			o.dir = value;
			continue;
		}
		if (arg == "--compression") {
			auto c = store::Compression::parse(value);
			if (!c) {
				std::fprintf(stderr, "chunk-size-bench: %s\n", c.error().message.c_str());
				return std::nullopt;
			}
			o.compression = *c;
			continue;
		}
		if (arg == "--changed-percent") {
			char *end = nullptr;
			o.changedPercent = std::strtod(value, &end);
			if (*end || !(o.changedPercent > 0 && o.changedPercent <= 50)) {
				std::fprintf(stderr, "chunk-size-bench: --changed-percent must be in (0, 50]\n");
				return std::nullopt;
			}
			continue;
		}
		if (arg == "--sizes") {
			o.sizesKib.clear();
			std::string list = value;
			for (size_t pos = 0; pos <= list.size();) {
				size_t comma = std::min(list.find(',', pos), list.size());
				std::string item = list.substr(pos, comma - pos);
				n = parseNumber(item.c_str());
				if (!n || *n < 4 || *n > 16384 || (*n & (*n - 1))) {
					std::fprintf(stderr,
						     "chunk-size-bench: chunk size '%s' KiB is not a power of two "
						     "from 4 to 16384\n",
						     item.c_str());
					return std::nullopt;
				}
				o.sizesKib.push_back(uint32_t(*n));
				pos = comma + 1;
			}
			continue;
		}
		n = parseNumber(value);
		if (!n) {
			std::fprintf(stderr, "chunk-size-bench: %s '%s' is not a number\n", arg.c_str(), value);
			return std::nullopt;
		}
		if (arg == "--disk-mib" && *n >= 16)
			o.diskMib = *n;
		else if (arg == "--threads" && *n >= 1 && *n <= 256)
			o.threads = unsigned(*n);
		else if (arg == "--repeat" && *n >= 1 && *n <= 100)
			o.repeat = unsigned(*n);
		else if (arg == "--seed")
			o.seed = *n;
		else {
			std::fprintf(stderr, "chunk-size-bench: bad option or value: %s %s\n", arg.c_str(), value);
			usage(stderr);
			return std::nullopt;
		}
	}
	return o;
}

struct Disk {
	Bytes image;
	uint64_t randomBytes = 0;
	uint64_t textBytes = 0;
	uint64_t zeroBytes = 0;
	uint64_t extents = 0;
	double textZstdRatio = 0; // of the text extents, zstd -1 in 64 KiB pieces
};

// Extents of 4 KiB to 4 MiB (log-uniform, 4 KiB multiples) of random, text
// or zero bytes. Mixing them this finely, rather than in three big regions,
// is what a used guest file system looks like, and it is what makes zero
// detection depend on the chunk size. Each extent's kind is drawn with odds
// proportional to how far that kind lags behind its share (1/4, 1/4, 1/2),
// so the shares come out right even on a small disk.
Disk makeDisk(uint64_t size, uint64_t seed)
{
	constexpr double kShare[3] = {0.25, 0.25, 0.5};
	Disk d;
	d.image.assign(size, 0);
	Rng rng(seed);
	uint64_t textIn = 0, textOut = 0;
	std::vector<uint8_t> zbuf(ZSTD_compressBound(64 * kKiB));
	for (uint64_t off = 0; off < size; d.extents++) {
		double lg = std::log(4096.0) + rng.unit() * (std::log(4.0 * kMiB) - std::log(4096.0));
		uint64_t len = std::max<uint64_t>(4096, uint64_t(std::exp(lg)) & ~uint64_t(4095));
		len = std::min(len, size - off);
		std::span<uint8_t> extent(d.image.data() + off, len);
		double lag[3], total = 0;
		const uint64_t have[3] = {d.randomBytes, d.textBytes, d.zeroBytes};
		for (int k = 0; k < 3; k++) {
			lag[k] = std::max(0.0, kShare[k] * double(off + len) - double(have[k]));
			total += lag[k];
		}
		double pick = rng.unit() * total;
		int kind = pick < lag[0] ? 0 : pick < lag[0] + lag[1] ? 1 : 2;
		switch (kind) {
		case 0:
			fillRandom(rng, extent);
			d.randomBytes += len;
			break;
		case 1:
			fillText(rng, extent);
			d.textBytes += len;
			for (uint64_t p = 0; p < len; p += 64 * kKiB) {
				size_t n = size_t(std::min<uint64_t>(64 * kKiB, len - p));
				textIn += n;
				textOut += ZSTD_compress(zbuf.data(), zbuf.size(), extent.data() + p, n, 1);
			}
			break;
		default:
			d.zeroBytes += len;
			break;
		}
		off += len;
	}
	d.textZstdRatio = textOut ? double(textIn) / double(textOut) : 0;
	return d;
}

// `percent` of the disk in distinct writes of `ioSize` bytes aligned to
// `ioSize`, uniformly scattered; half of them write random bytes, half text.
struct Workload {
	std::string name;
	uint32_t ioSize = 0;
	std::vector<uint64_t> offsets; // sorted
	Bytes data;                    // what each write puts there, in order
};

Workload makeWorkload(std::string name, uint32_t ioSize, uint64_t diskSize, double percent, uint64_t seed)
{
	Workload w;
	w.name = std::move(name);
	w.ioSize = ioSize;
	uint64_t blocks = diskSize / ioSize;
	uint64_t count = std::max<uint64_t>(1, uint64_t(std::llround(double(diskSize) * percent / 100.0 / ioSize)));
	count = std::min(count, blocks);
	Rng rng(seed);
	std::unordered_set<uint64_t> chosen;
	while (chosen.size() < count)
		chosen.insert(rng.below(blocks));
	for (uint64_t b : chosen)
		w.offsets.push_back(b * ioSize);
	std::sort(w.offsets.begin(), w.offsets.end());
	w.data.resize(count * ioSize);
	for (uint64_t i = 0; i < count; i++) {
		std::span<uint8_t> out(w.data.data() + i * ioSize, ioSize);
		if (rng.below(2))
			fillRandom(rng, out);
		else
			fillText(rng, out);
	}
	return w;
}

// Writes `w` into the image, keeping what it overwrote in `undo`. Returns
// the number of bytes whose value actually changed.
uint64_t applyWorkload(Bytes &image, const Workload &w, Bytes &undo)
{
	undo.resize(w.data.size());
	uint64_t changed = 0;
	for (size_t i = 0; i < w.offsets.size(); i++) {
		uint8_t *disk = image.data() + w.offsets[i];
		const uint8_t *src = w.data.data() + i * w.ioSize;
		std::memcpy(undo.data() + i * w.ioSize, disk, w.ioSize);
		for (uint32_t k = 0; k < w.ioSize; k++)
			changed += disk[k] != src[k];
		std::memcpy(disk, src, w.ioSize);
	}
	return changed;
}

void undoWorkload(Bytes &image, const Workload &w, const Bytes &undo)
{
	for (size_t i = 0; i < w.offsets.size(); i++)
		std::memcpy(image.data() + w.offsets[i], undo.data() + i * w.ioSize, w.ioSize);
}

// The slots a dirty bitmap of granularity `chunkSize` has set after `w`.
std::vector<uint64_t> dirtySlots(const Workload &w, uint32_t chunkSize, uint64_t slots)
{
	std::vector<bool> dirty(slots, false);
	for (uint64_t off : w.offsets)
		for (uint64_t s = off / chunkSize; s <= (off + w.ioSize - 1) / chunkSize && s < slots; s++)
			dirty[s] = true;
	std::vector<uint64_t> out;
	for (uint64_t s = 0; s < slots; s++)
		if (dirty[s])
			out.push_back(s);
	return out;
}

// Bytes of regular files under `dir`: what the store really grew by,
// including pack headers, pack indexes and the manifest.
struct DirUsage {
	uint64_t bytes = 0;
	uint64_t packs = 0;
	uint64_t packIndexBytes = 0;
};

DirUsage dirUsage(const fs::path &dir)
{
	DirUsage u;
	std::error_code ec;
	for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec)) {
		if (!it->is_regular_file(ec))
			continue;
		uint64_t size = it->file_size(ec);
		u.bytes += size;
		if (it->path().extension() == ".pack")
			u.packs++;
		else if (it->path().extension() == ".idx")
			u.packIndexBytes += size;
	}
	return u;
}

double secondsSince(std::chrono::steady_clock::time_point t0)
{
	return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU time of the whole process (all threads). The machine may be shared:
// wall time then also measures the neighbours, CPU time much less so.
double cpuSeconds()
{
	struct rusage ru;
	::getrusage(RUSAGE_SELF, &ru);
	return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct SnapshotStats {
	double seconds = 0;
	double cpuSeconds = 0;
	uint64_t slotsCopied = 0;   // slots read from the disk
	uint64_t bytesRead = 0;
	uint64_t zeroSlots = 0;     // read, all zero, not stored
	uint64_t chunksNew = 0;     // data chunks and index pages
	uint64_t chunksReused = 0;
	uint64_t blobBytes = 0;     // ChunkWriter::bytesAdded
	uint64_t pageBlobBytes = 0; // of which index pages
	uint64_t pagesWritten = 0;  // index pages differing from the parent's
	uint64_t storeBytes = 0;    // growth of the store directory
};

// One snapshot as the engine takes it: `slots` are the slots to read (all
// of them for a full snapshot, the dirty ones for an incremental), copied
// into `index`, which starts as the parent's index.
Result<SnapshotStats> takeSnapshot(store::Store &store, std::span<const uint8_t> image, store::SnapshotIndex &index,
				   std::span<const uint64_t> slots, const store::Manifest *parent, unsigned threads,
				   store::Manifest &m)
{
	SnapshotStats st;
	uint64_t before = dirUsage(store.backend().describe()).bytes;
	auto t0 = std::chrono::steady_clock::now();
	double cpu0 = cpuSeconds();

	auto id = newResourceId("snap-");
	if (!id)
		return std::unexpected(id.error());
	m = store::Manifest{};
	m.snapshotId = *id;
	m.volumeId = volumeIdFor("name:chunk-size-bench", "vda");
	m.volume = {"name:chunk-size-bench", "chunk-size-bench", "vda", "raw"};
	m.parentSnapshotId = parent ? parent->snapshotId : "";
	m.startTime = isoTimeNow();
	m.captureMode = parent ? "incremental" : "full";
	m.captureReason = parent ? "" : "first snapshot of the volume";

	auto writer = store.newWriter();
	// Workers take runs of up to 4 MiB of slots, like the engine's reader
	// hands out; the data comes from memory, so this measures the store's
	// side alone (hash, compress, encrypt, pack, fsync), not NBD.
	const uint64_t batch = std::max<uint64_t>(1, 4 * kMiB / index.chunkSize());
	std::atomic<uint64_t> next{0}, zero{0}, read{0};
	std::mutex errorMutex;
	std::optional<Error> firstError;
	std::vector<std::thread> workers;
	for (unsigned w = 0; w < threads; w++) {
		workers.emplace_back([&] {
			auto codec = store.newCodec();
			for (;;) {
				uint64_t first = next.fetch_add(batch);
				if (first >= slots.size())
					return;
				uint64_t last = std::min<uint64_t>(first + batch, slots.size());
				for (uint64_t i = first; i < last; i++) {
					uint64_t slot = slots[i];
					std::span<const uint8_t> data(image.data() + slot * index.chunkSize(),
								      index.slotLength(slot));
					read += data.size();
					if (isAllZero(data)) {
						index.set(slot, store::kZeroChunk);
						zero++;
						continue;
					}
					auto put = writer->put(*codec, data, store::ChunkType::Data);
					if (!put) {
						std::lock_guard lock(errorMutex);
						if (!firstError)
							firstError = put.error();
						next = slots.size();
						return;
					}
					index.set(slot, *put);
				}
			}
		});
	}
	for (std::thread &t : workers)
		t.join();
	if (firstError)
		return std::unexpected(*firstError);

	auto codec = store.newCodec();
	uint64_t dataBlobBytes = writer->bytesAdded();
	VS_TRY(index.save(*writer, *codec, m));
	st.pageBlobBytes = writer->bytesAdded() - dataBlobBytes;
	VS_TRY(writer->commit());
	st.slotsCopied = slots.size();
	st.bytesRead = read;
	st.zeroSlots = zero;
	st.chunksNew = writer->chunksNew();
	st.chunksReused = writer->chunksReused();
	st.blobBytes = writer->bytesAdded();
	m.completionTime = isoTimeNow();
	m.stats = {st.bytesRead, st.blobBytes, st.chunksNew, st.chunksReused, st.zeroSlots};
	VS_TRY(store.putManifest(m));
	st.seconds = secondsSince(t0);
	st.cpuSeconds = cpuSeconds() - cpu0;

	for (size_t p = 0; p < m.indexPages.size(); p++)
		if (!store::isZeroId(m.indexPages[p]) && (!parent || parent->indexPages[p] != m.indexPages[p]))
			st.pagesWritten++;
	st.storeBytes = dirUsage(store.backend().describe()).bytes - before;
	return st;
}

struct IncrementalResult {
	SnapshotStats snap;
	uint64_t writes = 0;
	uint64_t written = 0; // bytes the guest wrote
	uint64_t changed = 0; // of which differ from what was there
	uint64_t dirtySlots = 0;
};

struct Run {
	SnapshotStats full;
	DirUsage afterFull;
	double openSeconds = 0; // Store::open of the store holding the full snapshot
	uint64_t openRamBytes = 0;
	std::vector<IncrementalResult> incrementals;
};

uint64_t heapInUse()
{
	struct mallinfo2 mi = ::mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

Result<Run> runOne(const Options &opt, uint32_t chunkSize, Bytes &image, const std::vector<Workload> &workloads,
		   const fs::path &workDir)
{
	fs::path storeDir = workDir / ("store-" + std::to_string(chunkSize / kKiB) + "k");
	fs::path keyFile = workDir / "master.key";
	bool keyCreated = false;
	VS_TRY(store::Store::init(storeDir, keyFile, chunkSize, &keyCreated, opt.compression));
	Run run;
	{
		auto opened = store::Store::open(storeDir, keyFile);
		if (!opened)
			return std::unexpected(opened.error());
		store::Store &s = **opened;

		store::SnapshotIndex base(image.size(), chunkSize);
		std::vector<uint64_t> all(base.slots());
		std::iota(all.begin(), all.end(), uint64_t(0));
		store::Manifest full;
		auto st = takeSnapshot(s, image, base, all, nullptr, opt.threads, full);
		if (!st)
			return std::unexpected(st.error());
		run.full = *st;
		run.afterFull = dirUsage(storeDir);

		// What every later command pays to open this store: read and
		// decrypt every pack index, and hold one map entry per chunk.
		uint64_t heap0 = heapInUse();
		auto t0 = std::chrono::steady_clock::now();
		{
			auto again = store::Store::open(storeDir, keyFile);
			if (!again)
				return std::unexpected(again.error());
			run.openSeconds = secondsSince(t0);
			uint64_t heap1 = heapInUse();
			run.openRamBytes = heap1 > heap0 ? heap1 - heap0 : 0;
		}

		for (const Workload &w : workloads) {
			IncrementalResult r;
			Bytes undo;
			r.writes = w.offsets.size();
			r.written = w.data.size();
			r.changed = applyWorkload(image, w, undo);
			std::vector<uint64_t> dirty = dirtySlots(w, chunkSize, base.slots());
			r.dirtySlots = dirty.size();
			store::SnapshotIndex index = base.copy(); // the parent's array
			store::Manifest m;
			auto inc = takeSnapshot(s, image, index, dirty, &full, opt.threads, m);
			undoWorkload(image, w, undo);
			if (!inc)
				return std::unexpected(inc.error());
			r.snap = *inc;
			run.incrementals.push_back(r);
		}
	}
	std::error_code ec;
	fs::remove_all(storeDir, ec);
	return run;
}

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	size_t n = v.size();
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double mib(uint64_t bytes)
{
	return double(bytes) / double(kMiB);
}

// Per chunk size: the last run's sizes (they are the same every run: same
// bytes, same compression) and every run's times.
struct Row {
	uint32_t chunkSize = 0;
	Run last;
	std::vector<double> fullSeconds;
	std::vector<double> fullCpuSeconds;
	std::vector<double> openSeconds;
	std::vector<std::vector<double>> incSeconds;
	std::vector<std::vector<double>> incCpuSeconds;
};

std::string humanBytes(double b)
{
	const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	char buf[32];
	std::snprintf(buf, sizeof(buf), b < 10 ? "%.2f %s" : b < 100 ? "%.1f %s" : "%.0f %s", b, units[u]);
	return buf;
}

std::string humanCount(double n)
{
	char buf[32];
	if (n >= 1e9)
		std::snprintf(buf, sizeof(buf), "%.2fG", n / 1e9);
	else if (n >= 1e6)
		std::snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
	else if (n >= 1e3)
		std::snprintf(buf, sizeof(buf), "%.1fk", n / 1e3);
	else
		std::snprintf(buf, sizeof(buf), "%.0f", n);
	return buf;
}

std::string jsonArray(const std::vector<double> &v)
{
	std::string out = "[";
	char buf[32];
	for (size_t i = 0; i < v.size(); i++) {
		std::snprintf(buf, sizeof(buf), "%s%.4f", i ? "," : "", v[i]);
		out += buf;
	}
	return out + "]";
}

struct Derived {
	double indexPerTiB;        // one snapshot's index of a 1 TiB disk, 32 B per slot
	double chunksPerTiB;       // chunks in 1 TiB of unique (uncompressed) data
	double objectsPerTiB;      // stored chunks per TiB of disk like this one, measured
	double packFilesPerTiB;    // .pack + .idx files per TiB of disk like this one
	double packIndexPerTiB;    // bytes of pack indexes per TiB of unique data
	double ramPerTiB;          // store's in-memory chunk map per TiB of unique data
	double openSecondsPerTiB;  // Store::open time per TiB of unique data
};

Derived derive(const Row &row, uint64_t diskSize)
{
	const Run &r = row.last;
	double scale = kTiB / double(diskSize);
	double stored = double(r.full.chunksNew);
	Derived d;
	d.chunksPerTiB = kTiB / row.chunkSize;
	d.indexPerTiB = d.chunksPerTiB * sizeof(store::ChunkId);
	d.objectsPerTiB = stored * scale;
	d.packFilesPerTiB = 2.0 * double(r.afterFull.packs) * scale;
	d.packIndexPerTiB = double(r.afterFull.packIndexBytes) / stored * d.chunksPerTiB;
	d.ramPerTiB = double(r.openRamBytes) / stored * d.chunksPerTiB;
	d.openSecondsPerTiB = median(row.openSeconds) / stored * d.chunksPerTiB;
	return d;
}

void printReport(const Options &opt, const Disk &disk, const std::vector<Workload> &workloads,
		 const std::vector<Row> &rows)
{
	const uint64_t size = disk.image.size();
	const uint64_t nonZero = disk.randomBytes + disk.textBytes;
	std::printf("disk: %s in %lu extents: %.1f%% random, %.1f%% text (zstd -1 %.2f:1), %.1f%% zero; "
		    "%u worker threads; times are medians of %u runs\n\n",
		    humanBytes(double(size)).c_str(), (unsigned long)disk.extents, 100.0 * disk.randomBytes / size,
		    100.0 * disk.textBytes / size, disk.textZstdRatio, 100.0 * disk.zeroBytes / size, opt.threads,
		    opt.repeat);

	std::printf("Full snapshot\n");
	std::printf("%7s %8s %6s %8s %5s %9s %8s %7s %7s %8s %7s %9s %7s %7s\n", "chunk", "slots", "zero%",
		    "stored", "packs", "added MiB", "added/nz", "time s", "best s", "MB/s", "cpu s", "MB/cpu-s",
		    "open ms", "B/chunk");
	for (const Row &row : rows) {
		const Run &r = row.last;
		double t = median(row.fullSeconds);
		double best = *std::min_element(row.fullSeconds.begin(), row.fullSeconds.end());
		double cpu = median(row.fullCpuSeconds);
		std::printf("%5uKi %8lu %6.1f %8lu %5lu %9.1f %8.3f %7.2f %7.2f %8.0f %7.2f %9.0f %7.1f %7.0f\n",
			    row.chunkSize / unsigned(kKiB), (unsigned long)r.full.slotsCopied,
			    100.0 * r.full.zeroSlots / r.full.slotsCopied, (unsigned long)r.full.chunksNew,
			    (unsigned long)r.afterFull.packs, mib(r.full.storeBytes),
			    double(r.full.storeBytes) / nonZero, t, best, size / t / 1e6, cpu, nonZero / cpu / 1e6,
			    1000 * median(row.openSeconds), double(r.openRamBytes) / r.full.chunksNew);
	}
	std::printf("  stored: chunks written (data and index pages); added: growth of the store directory;\n"
		    "  added/nz: added / non-zero bytes of the disk; time s, best s: wall, median and fastest run;\n"
		    "  MB/s: disk size / median wall time (10^6 B); cpu s: process CPU time, all threads;\n"
		    "  MB/cpu-s: non-zero MB per CPU second; open ms: Store::open of the result;\n"
		    "  B/chunk: heap the opened store holds per chunk (its chunk map)\n\n");

	for (size_t w = 0; w < workloads.size(); w++) {
		std::printf("Incremental after %s (%g%% of the disk in %lu scattered writes of %s)\n",
			    workloads[w].name.c_str(), opt.changedPercent, (unsigned long)workloads[w].offsets.size(),
			    humanBytes(workloads[w].ioSize).c_str());
		std::printf("%7s %10s %7s %9s %6s %10s %9s %9s %7s %7s\n", "chunk", "changed", "dirty", "read MiB",
			    "pages", "added MiB", "index MiB", "growth/B", "time s", "cpu s");
		for (const Row &row : rows) {
			const IncrementalResult &r = row.last.incrementals[w];
			std::printf("%5uKi %10s %7lu %9.1f %6lu %10.2f %9.2f %9.2f %7.3f %7.3f\n",
				    row.chunkSize / unsigned(kKiB), humanBytes(double(r.changed)).c_str(),
				    (unsigned long)r.dirtySlots, mib(r.snap.bytesRead), (unsigned long)r.snap.pagesWritten,
				    mib(r.snap.storeBytes), mib(r.snap.pageBlobBytes),
				    double(r.snap.storeBytes) / double(r.changed), median(row.incSeconds[w]),
				    median(row.incCpuSeconds[w]));
		}
		std::printf("  changed: bytes whose value the writes changed; dirty: slots the bitmap marks;\n"
			    "  pages: index pages rewritten; index MiB: their blobs, included in added;\n"
			    "  growth/B: added / changed (store growth per changed byte); read MiB: dirty slots read\n\n");
	}

	std::printf("Per TiB (derived)\n");
	std::printf("%7s %12s %12s %12s %12s %12s %12s %12s\n", "chunk", "index/snap", "chunks/TiB", "objects/TiB",
		    "packfiles/TiB", "packidx/TiB", "RAM/TiB", "open s/TiB");
	for (const Row &row : rows) {
		Derived d = derive(row, size);
		std::printf("%5uKi %12s %12s %12s %12s %12s %12s %12.1f\n", row.chunkSize / unsigned(kKiB),
			    humanBytes(d.indexPerTiB).c_str(), humanCount(d.chunksPerTiB).c_str(),
			    humanCount(d.objectsPerTiB).c_str(), humanCount(d.packFilesPerTiB).c_str(),
			    humanBytes(d.packIndexPerTiB).c_str(), humanBytes(d.ramPerTiB).c_str(),
			    d.openSecondsPerTiB);
	}
	std::printf("  index/snap: one snapshot's index of a 1 TiB disk (32 B per slot, before page dedup);\n"
		    "  chunks/TiB: chunks in 1 TiB of unique data; objects/TiB: chunks stored per TiB of a disk\n"
		    "  like this one (measured, scaled); packfiles/TiB: .pack + .idx files, same scaling;\n"
		    "  packidx, RAM, open s: per TiB of unique data, scaled from the measured per-chunk cost\n\n");

	// One JSON object per chunk size, for comparing runs with jq.
	for (const Row &row : rows) {
		const Run &r = row.last;
		Derived d = derive(row, size);
		double t = median(row.fullSeconds);
		std::printf("{\"chunk_size\":%u,\"disk_bytes\":%lu,\"nonzero_bytes\":%lu,\"threads\":%u,\"runs\":%u,"
			    "\"full\":{\"slots\":%lu,\"zero_slots\":%lu,\"chunks_new\":%lu,\"packs\":%lu,"
			    "\"blob_bytes\":%lu,\"store_bytes\":%lu,\"pack_index_bytes\":%lu,\"seconds\":%.4f,"
			    "\"mb_per_s\":%.1f,\"cpu_seconds\":%.4f,\"seconds_all\":%s,\"cpu_seconds_all\":%s,"
			    "\"open_seconds\":%.5f,\"open_ram_bytes\":%lu}",
			    row.chunkSize, (unsigned long)size, (unsigned long)nonZero, opt.threads, opt.repeat,
			    (unsigned long)r.full.slotsCopied, (unsigned long)r.full.zeroSlots,
			    (unsigned long)r.full.chunksNew, (unsigned long)r.afterFull.packs,
			    (unsigned long)r.full.blobBytes, (unsigned long)r.full.storeBytes,
			    (unsigned long)r.afterFull.packIndexBytes, t, size / t / 1e6, median(row.fullCpuSeconds),
			    jsonArray(row.fullSeconds).c_str(), jsonArray(row.fullCpuSeconds).c_str(), median(row.openSeconds),
			    (unsigned long)r.openRamBytes);
		for (size_t w = 0; w < workloads.size(); w++) {
			const IncrementalResult &ir = r.incrementals[w];
			double ti = median(row.incSeconds[w]);
			std::printf(",\"%s\":{\"io_size\":%u,\"writes\":%lu,\"written_bytes\":%lu,\"changed_bytes\":%lu,"
				    "\"dirty_slots\":%lu,\"read_bytes\":%lu,\"chunks_new\":%lu,\"pages_written\":%lu,"
				    "\"page_blob_bytes\":%lu,\"blob_bytes\":%lu,\"store_bytes\":%lu,"
				    "\"growth_per_changed_byte\":%.4f,\"seconds\":%.4f,\"cpu_seconds\":%.4f}",
				    workloads[w].name.c_str(), workloads[w].ioSize, (unsigned long)ir.writes,
				    (unsigned long)ir.written, (unsigned long)ir.changed, (unsigned long)ir.dirtySlots,
				    (unsigned long)ir.snap.bytesRead, (unsigned long)ir.snap.chunksNew,
				    (unsigned long)ir.snap.pagesWritten, (unsigned long)ir.snap.pageBlobBytes,
				    (unsigned long)ir.snap.blobBytes, (unsigned long)ir.snap.storeBytes,
				    double(ir.snap.storeBytes) / double(ir.changed), ti, median(row.incCpuSeconds[w]));
		}
		std::printf(",\"per_tib\":{\"index_bytes_per_snapshot\":%.0f,\"chunks_unique\":%.0f,"
			    "\"objects\":%.0f,\"pack_files\":%.0f,\"pack_index_bytes\":%.0f,\"ram_bytes\":%.0f,"
			    "\"open_seconds\":%.2f}}\n",
			    d.indexPerTiB, d.chunksPerTiB, d.objectsPerTiB, d.packFilesPerTiB, d.packIndexPerTiB,
			    d.ramPerTiB, d.openSecondsPerTiB);
	}
}

// The temporary directory goes away at exit, on error and on ^C: a signal
// thread owns SIGINT/SIGTERM/SIGHUP, since removing files is not something
// an asynchronous handler may do.
fs::path gWorkDir;

void startSignalThread()
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, nullptr);
	std::thread([set] {
		int sig = 0;
		sigwait(&set, &sig);
		std::fprintf(stderr, "\nchunk-size-bench: signal %d, removing %s\n", sig, gWorkDir.c_str());
		std::error_code ec;
		fs::remove_all(gWorkDir, ec);
		::_exit(128 + sig);
	}).detach();
}

struct WorkDirGuard {
	~WorkDirGuard()
	{
		std::error_code ec;
		if (!gWorkDir.empty())
			fs::remove_all(gWorkDir, ec);
	}
};

} // namespace

int main(int argc, char **argv)
{
	auto parsed = parseOptions(argc, argv);
	if (!parsed)
		return 2;
	const Options opt = *parsed;

	std::string tmpl = (opt.dir / "chunk-size-bench-XXXXXX").string();
	// Signals are blocked before the directory exists, so there is no
	// window where ^C leaves it behind.
	startSignalThread();
	if (!::mkdtemp(tmpl.data())) {
		std::fprintf(stderr, "chunk-size-bench: cannot create a directory in %s: %s\n", opt.dir.c_str(),
			     std::strerror(errno));
		return 1;
	}
	gWorkDir = tmpl;
	WorkDirGuard guard;

	std::fprintf(stderr, "generating a %lu MiB disk...\n", (unsigned long)opt.diskMib);
	Disk disk = makeDisk(opt.diskMib * kMiB, opt.seed);
	std::vector<Workload> workloads;
	workloads.push_back(makeWorkload("random_4k", 4096, disk.image.size(), opt.changedPercent, opt.seed + 1));
	workloads.push_back(makeWorkload("random_64k", 65536, disk.image.size(), opt.changedPercent, opt.seed + 2));

	std::vector<Row> rows(opt.sizesKib.size());
	for (unsigned rep = 0; rep < opt.repeat; rep++) {
		for (size_t i = 0; i < opt.sizesKib.size(); i++) {
			uint32_t chunkSize = opt.sizesKib[i] * uint32_t(kKiB);
			std::fprintf(stderr, "run %u/%u: %u KiB chunks\n", rep + 1, opt.repeat, opt.sizesKib[i]);
			auto run = runOne(opt, chunkSize, disk.image, workloads, gWorkDir);
			if (!run) {
				std::fprintf(stderr, "chunk-size-bench: %u KiB chunks: %s\n", opt.sizesKib[i],
					     run.error().toString().c_str());
				return 1;
			}
			Row &row = rows[i];
			row.chunkSize = chunkSize;
			row.fullSeconds.push_back(run->full.seconds);
			row.fullCpuSeconds.push_back(run->full.cpuSeconds);
			row.openSeconds.push_back(run->openSeconds);
			row.incSeconds.resize(workloads.size());
			row.incCpuSeconds.resize(workloads.size());
			for (size_t w = 0; w < workloads.size(); w++) {
				row.incSeconds[w].push_back(run->incrementals[w].snap.seconds);
				row.incCpuSeconds[w].push_back(run->incrementals[w].snap.cpuSeconds);
			}
			row.last = std::move(*run);
		}
	}
	printReport(opt, disk, workloads, rows);
	return 0;
}
