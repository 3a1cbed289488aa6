// compression-bench: what each compressor a store may choose costs and
// saves on an image, and what skipping chunks that look random (the
// codec's worthCompressing) costs in store growth. See COMPRESSION.md.
//
//   compression-bench FILE [CHUNK_KIB] [METHOD...]
//
// For every CHUNK_KIB-sized piece of FILE that is not all zeros (the store
// never stores those), on one thread: each METHOD ("zstd:1", "zstd:-3",
// "lz4"; default all three) compresses every piece (as the codec did
// before the skip) and then only the pieces worthCompressing lets through
// (as it does now), the body kept raw when it is not smaller either way.
// One JSON line per method: bytes in, bytes stored without and with the
// skip, MB/s of input for each (per second of the thread's CPU time), and
// the false skips: pieces skipped that
// the method would have shrunk, and by how much.
#include <fcntl.h>
#include <lz4.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "store/compressibility.h"
#include "store/compression.h"

namespace {

using virtsnap::store::Compression;

[[noreturn]] void die(const std::string &what)
{
	std::fprintf(stderr, "compression-bench: %s\n", what.c_str());
	std::exit(1);
}

std::vector<std::vector<uint8_t>> readPieces(const char *path, size_t chunk)
{
	int fd = ::open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(std::string("cannot open ") + path);
	std::vector<std::vector<uint8_t>> pieces;
	std::vector<uint8_t> buf(chunk);
	for (;;) {
		size_t got = 0;
		while (got < chunk) {
			ssize_t r = ::read(fd, buf.data() + got, chunk - got);
			if (r <= 0)
				break;
			got += size_t(r);
		}
		if (got == 0)
			break;
		if (std::any_of(buf.begin(), buf.begin() + long(got), [](uint8_t b) { return b != 0; }))
			pieces.emplace_back(buf.begin(), buf.begin() + long(got));
		if (got < chunk)
			break;
	}
	::close(fd);
	return pieces;
}

// Compresses `in` into `out`; 0 when the method leaves it no smaller.
struct Compressor {
	Compression c;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	std::vector<uint8_t> lz4State = std::vector<uint8_t>(size_t(LZ4_sizeofState()));
	std::vector<uint8_t> out;

	size_t run(const std::vector<uint8_t> &in)
	{
		size_t n = 0;
		if (c.method == Compression::Method::Lz4) {
			out.resize(size_t(LZ4_compressBound(int(in.size()))));
			int r = LZ4_compress_fast_extState(lz4State.data(), (const char *)in.data(), (char *)out.data(),
							   int(in.size()), int(out.size()), 1);
			n = r > 0 ? size_t(r) : 0;
		} else {
			out.resize(ZSTD_compressBound(in.size()));
			n = ZSTD_compressCCtx(cctx, out.data(), out.size(), in.data(), in.size(), c.level);
			if (ZSTD_isError(n))
				n = 0;
		}
		return n < in.size() ? n : 0;
	}
};

// The thread's CPU time: on a machine others load, wall time measures them.
double cpuNow()
{
	timespec ts{};
	::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

double seconds(double since)
{
	return cpuNow() - since;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: compression-bench FILE [CHUNK_KIB] [METHOD...]");
	size_t chunk = argc > 2 ? size_t(std::atoi(argv[2])) * 1024 : 64 * 1024;
	if (chunk < 4096)
		die("CHUNK_KIB must be at least 4");
	std::vector<std::string> methods;
	for (int i = 3; i < argc; i++)
		methods.push_back(argv[i]);
	if (methods.empty())
		methods = {"zstd:1", "zstd:-3", "lz4"};
	auto pieces = readPieces(argv[1], chunk);
	uint64_t in = 0;
	for (const auto &p : pieces)
		in += p.size();

	auto t0 = cpuNow();
	std::vector<bool> worth;
	for (const auto &p : pieces)
		worth.push_back(virtsnap::store::worthCompressing(p));
	double guessS = seconds(t0);
	size_t skipped = size_t(std::count(worth.begin(), worth.end(), false));
	std::printf("{\"file\": \"%s\", \"chunk\": %zu, \"pieces\": %zu, \"bytes\": %llu, \"skipped\": %zu, "
		    "\"guess_mbps\": %.0f}\n",
		    argv[1], chunk, pieces.size(), (unsigned long long)in, skipped, double(in) / guessS / 1e6);

	for (const std::string &name : methods) {
		auto c = Compression::parse(name);
		if (!c)
			die(c.error().message);
		Compressor comp;
		comp.c = *c;
		std::vector<size_t> sizes(pieces.size());
		t0 = cpuNow();
		for (size_t i = 0; i < pieces.size(); i++)
			sizes[i] = comp.run(pieces[i]);
		double allS = seconds(t0);
		t0 = cpuNow();
		for (size_t i = 0; i < pieces.size(); i++)
			if (virtsnap::store::worthCompressing(pieces[i]))
				(void)comp.run(pieces[i]);
		double skipS = seconds(t0);
		uint64_t storedAll = 0, storedSkip = 0, falseSkips = 0, falseSkipBytes = 0;
		for (size_t i = 0; i < pieces.size(); i++) {
			uint64_t body = sizes[i] ? sizes[i] : pieces[i].size();
			storedAll += body;
			storedSkip += worth[i] ? body : pieces[i].size();
			if (!worth[i] && sizes[i]) {
				falseSkips++;
				falseSkipBytes += pieces[i].size() - sizes[i];
			}
		}
		std::printf("{\"method\": \"%s\", \"stored\": %llu, \"stored_skip\": %llu, \"ratio\": %.3f, "
			    "\"mbps\": %.0f, \"mbps_skip\": %.0f, \"false_skips\": %llu, \"false_skip_bytes\": %llu}\n",
			    name.c_str(), (unsigned long long)storedAll, (unsigned long long)storedSkip,
			    double(in) / double(storedAll), double(in) / allS / 1e6, double(in) / skipS / 1e6,
			    (unsigned long long)falseSkips, (unsigned long long)falseSkipBytes);
	}
	return 0;
}
