// bench-data: the bytes of the comparison benchmark (run-bench), generated
// from one seed so that virtsnap and every peer see the same disk and the
// same rewrites, and fast enough that a 2 GiB disk costs seconds.
//
//   bench-data image SIZE PATH [SEED]
//       a raw image of SIZE bytes: the first quarter random bytes, the
//       second quarter text-like data (zstd -1 about 2:1), the rest never
//       written (a hole: ftruncate).
//   bench-data writes SIZE PERCENT SEED PREFIX
//       PERCENT of the disk in distinct, non-overlapping 64 KiB writes at
//       uniformly scattered 4 KiB-aligned offsets, half random, half text:
//       PREFIX.list ("offset length" per line, sorted) and PREFIX.data (the
//       bytes, in that order).
//   bench-data apply IMAGE PREFIX
//       applies PREFIX's writes to a raw image with pwrite.
//   bench-data zstd FILE [LEVEL] [CHUNK] [SECONDS] [MAXBYTES]
//       compresses FILE's non-zero CHUNK-sized pieces (default level 1,
//       64 KiB; an even sample of at most MAXBYTES, default 256 MiB) for at
//       least SECONDS (default 1) on one thread, then decompresses them as
//       long, and prints one JSON line: bytes, compressed bytes, MB/s in
//       for each. All-zero pieces are left out, as the store never
//       compresses them.
//
// Everything here is fixed by the seed; see CHUNK_SIZE.md for the text mix
// (the same generator, so the numbers compare with that measurement).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <zstd.h>

#include "synthetic_data.h"

namespace {

using virtsnap::bench::fillRandom;
using virtsnap::bench::fillText;
using virtsnap::bench::Rng;

constexpr uint64_t kWriteSize = 64 * 1024;
constexpr uint64_t kWriteAlign = 4096;

[[noreturn]] void die(const std::string &what)
{
	std::fprintf(stderr, "bench-data: %s\n", what.c_str());
	std::exit(1);
}

uint64_t number(const char *s, const char *what)
{
	char *end = nullptr;
	errno = 0;
	unsigned long long v = std::strtoull(s, &end, 10);
	if (errno || !end || *end || end == s)
		die(std::string(what) + " '" + s + "' is not a number");
	return v;
}

void pwriteAll(int fd, const uint8_t *p, size_t n, uint64_t off, const std::string &path)
{
	while (n > 0) {
		ssize_t w = ::pwrite(fd, p, n, off_t(off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write " + path + ": " + std::strerror(errno));
		p += w;
		n -= size_t(w);
		off += uint64_t(w);
	}
}

int image(uint64_t size, const std::string &path, uint64_t seed)
{
	if (size % (4 * kWriteSize) != 0)
		die("size must be a multiple of 256 KiB");
	int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("create " + path + ": " + std::strerror(errno));
	Rng rng(seed);
	std::vector<uint8_t> buf(4 << 20);
	const uint64_t quarter = size / 4;
	for (uint64_t off = 0; off < 2 * quarter;) {
		uint64_t n = std::min<uint64_t>(buf.size(), 2 * quarter - off);
		if (off < quarter)
			n = std::min(n, quarter - off);
		std::span<uint8_t> piece(buf.data(), n);
		if (off < quarter)
			fillRandom(rng, piece);
		else
			fillText(rng, piece);
		pwriteAll(fd, buf.data(), n, off, path);
		off += n;
	}
	if (::ftruncate(fd, off_t(size)) != 0 || ::close(fd) != 0)
		die("finish " + path + ": " + std::strerror(errno));
	return 0;
}

int writes(uint64_t size, double percent, uint64_t seed, const std::string &prefix)
{
	const uint64_t slots = (size - kWriteSize) / kWriteAlign + 1;
	uint64_t count = uint64_t(double(size) * percent / 100.0 / double(kWriteSize) + 0.5);
	count = std::max<uint64_t>(1, count);
	if (count * kWriteSize * 2 > size)
		die("more than half the disk in writes is not a scattered workload");
	Rng rng(seed);
	// Non-overlapping: a write takes 16 aligned 4 KiB blocks.
	std::set<uint64_t> starts;
	std::vector<bool> busy(size / kWriteAlign, false);
	const uint64_t span = kWriteSize / kWriteAlign;
	while (starts.size() < count) {
		uint64_t b = rng.below(slots);
		bool free = true;
		for (uint64_t k = 0; k < span && free; k++)
			free = !busy[b + k];
		if (!free)
			continue;
		for (uint64_t k = 0; k < span; k++)
			busy[b + k] = true;
		starts.insert(b * kWriteAlign);
	}
	FILE *list = std::fopen((prefix + ".list").c_str(), "w");
	FILE *data = std::fopen((prefix + ".data").c_str(), "w");
	if (!list || !data)
		die("create " + prefix + ".list/.data: " + std::strerror(errno));
	std::vector<uint8_t> buf(kWriteSize);
	for (uint64_t off : starts) {
		if (rng.below(2))
			fillRandom(rng, buf);
		else
			fillText(rng, buf);
		std::fprintf(list, "%llu %llu\n", (unsigned long long)off, (unsigned long long)kWriteSize);
		if (std::fwrite(buf.data(), 1, buf.size(), data) != buf.size())
			die("write " + prefix + ".data: " + std::strerror(errno));
	}
	if (std::fclose(list) != 0 || std::fclose(data) != 0)
		die("close " + prefix + ".list/.data: " + std::strerror(errno));
	return 0;
}

int apply(const std::string &imagePath, const std::string &prefix)
{
	int fd = ::open(imagePath.c_str(), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		die("open " + imagePath + ": " + std::strerror(errno));
	FILE *list = std::fopen((prefix + ".list").c_str(), "r");
	FILE *data = std::fopen((prefix + ".data").c_str(), "r");
	if (!list || !data)
		die("open " + prefix + ".list/.data: " + std::strerror(errno));
	unsigned long long off, len;
	std::vector<uint8_t> buf;
	while (std::fscanf(list, "%llu %llu", &off, &len) == 2) {
		buf.resize(len);
		if (std::fread(buf.data(), 1, len, data) != len)
			die(prefix + ".data is shorter than its list");
		pwriteAll(fd, buf.data(), len, off, imagePath);
	}
	std::fclose(list);
	std::fclose(data);
	if (::close(fd) != 0)
		die("close " + imagePath + ": " + std::strerror(errno));
	return 0;
}

int zstdBench(const std::string &path, int level, uint64_t chunk, double seconds, uint64_t maxBytes)
{
	int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open " + path + ": " + std::strerror(errno));
	struct stat st;
	if (::fstat(fd, &st) != 0)
		die("stat " + path + ": " + std::strerror(errno));
	// Every k-th piece of the file, so that the sample (at most maxBytes)
	// has the file's mix of data; all-zero pieces are left out.
	const uint64_t pieceCount = (uint64_t(st.st_size) + chunk - 1) / chunk;
	const uint64_t stride = std::max<uint64_t>(1, (pieceCount * chunk + maxBytes - 1) / maxBytes);
	std::vector<uint8_t> all;
	std::vector<std::pair<size_t, size_t>> where;
	std::vector<uint8_t> piece(chunk);
	for (uint64_t i = 0; i < pieceCount; i += stride) {
		size_t want = size_t(std::min<uint64_t>(chunk, uint64_t(st.st_size) - i * chunk));
		for (size_t got = 0; got < want;) {
			ssize_t n = ::pread(fd, piece.data() + got, want - got, off_t(i * chunk + got));
			if (n <= 0)
				die("read " + path + ": " + std::strerror(errno));
			got += size_t(n);
		}
		if (std::all_of(piece.begin(), piece.begin() + long(want), [](uint8_t b) { return b == 0; }))
			continue;
		where.emplace_back(all.size(), want);
		all.insert(all.end(), piece.begin(), piece.begin() + long(want));
	}
	::close(fd);
	std::vector<std::span<const uint8_t>> pieces;
	for (auto [off, len] : where)
		pieces.emplace_back(all.data() + off, len);
	if (pieces.empty())
		die(path + " holds only zeros");
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	std::vector<uint8_t> out(ZSTD_compressBound(chunk)), back(chunk);
	std::vector<std::vector<uint8_t>> compressed(pieces.size());
	using Clock = std::chrono::steady_clock;
	uint64_t in = 0, outBytes = 0, rounds = 0;
	auto start = Clock::now();
	double elapsed = 0;
	do {
		outBytes = 0;
		for (size_t i = 0; i < pieces.size(); i++) {
			size_t n = ZSTD_compressCCtx(cctx, out.data(), out.size(), pieces[i].data(), pieces[i].size(), level);
			if (ZSTD_isError(n))
				die("zstd: " + std::string(ZSTD_getErrorName(n)));
			outBytes += n;
			if (rounds == 0)
				compressed[i].assign(out.begin(), out.begin() + long(n));
			in += pieces[i].size();
		}
		rounds++;
		elapsed = std::chrono::duration<double>(Clock::now() - start).count();
	} while (elapsed < seconds);
	double compressMBs = double(in) / elapsed / 1e6;
	uint64_t din = 0;
	start = Clock::now();
	do {
		for (size_t i = 0; i < pieces.size(); i++) {
			size_t n = ZSTD_decompressDCtx(dctx, back.data(), back.size(), compressed[i].data(),
						       compressed[i].size());
			if (ZSTD_isError(n) || n != pieces[i].size())
				die("zstd does not round-trip");
			din += n;
		}
		elapsed = std::chrono::duration<double>(Clock::now() - start).count();
	} while (elapsed < seconds);
	double decompressMBs = double(din) / elapsed / 1e6;
	uint64_t raw = 0;
	for (auto &p : pieces)
		raw += p.size();
	std::printf("{\"bytes\": %llu, \"compressed_bytes\": %llu, \"compress_mbps\": %.1f, \"decompress_mbps\": %.1f, "
		    "\"level\": %d, \"chunk\": %llu}\n",
		    (unsigned long long)raw, (unsigned long long)outBytes, compressMBs, decompressMBs, level,
		    (unsigned long long)chunk);
	ZSTD_freeCCtx(cctx);
	ZSTD_freeDCtx(dctx);
	return 0;
}

void usage()
{
	std::fprintf(stderr, "usage: bench-data image SIZE PATH [SEED]\n"
			     "       bench-data writes SIZE PERCENT SEED PREFIX\n"
			     "       bench-data apply IMAGE PREFIX\n"
			     "       bench-data zstd FILE [LEVEL] [CHUNK] [SECONDS] [MAXBYTES]\n");
	std::exit(2);
}

} // namespace

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	std::string cmd = argv[1];
	if (cmd == "image" && (argc == 4 || argc == 5))
		return image(number(argv[2], "size"), argv[3], argc == 5 ? number(argv[4], "seed") : 1);
	if (cmd == "writes" && argc == 6) {
		char *end = nullptr;
		double percent = std::strtod(argv[3], &end);
		if (!end || *end || percent <= 0 || percent > 50)
			die(std::string("percent '") + argv[3] + "' must be in (0, 50]");
		return writes(number(argv[2], "size"), percent, number(argv[4], "seed"), argv[5]);
	}
	if (cmd == "apply" && argc == 4)
		return apply(argv[2], argv[3]);
	if (cmd == "zstd" && argc >= 3 && argc <= 7) {
		int level = argc > 3 ? int(number(argv[3], "level")) : 1;
		uint64_t chunk = argc > 4 ? number(argv[4], "chunk") : 65536;
		double seconds = argc > 5 ? std::strtod(argv[5], nullptr) : 1.0;
		uint64_t maxBytes = argc > 6 ? number(argv[6], "max bytes") : (256ull << 20);
		if (chunk == 0 || maxBytes < chunk)
			die("chunk must be positive and at most max bytes");
		return zstdBench(argv[2], level, chunk, seconds, maxBytes);
	}
	usage();
}
