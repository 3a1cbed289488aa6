// nbd-random-read URI COUNT DEPTH [RANGE [SEED]]: COUNT reads of 4 KiB at
// random 4 KiB-aligned offsets below RANGE (default: the export's size),
// DEPTH of them in flight at once, over one libnbd connection; prints
// {"reads", "depth", "seconds", "iops", "mib_per_s", "errors"} as one JSON
// line. run-bench's serve rows: what fio's randread at that queue depth
// would measure, without fio.
#include <libnbd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

constexpr uint64_t kRead = 4096;

struct Progress {
	uint64_t inFlight = 0;
	uint64_t errors = 0;
};

int done(void *user, int *error)
{
	auto *p = static_cast<Progress *>(user);
	p->inFlight--;
	if (*error)
		p->errors++;
	return 1; // retire the command
}

} // namespace

int main(int argc, char **argv)
{
	if (argc < 4) {
		std::fprintf(stderr, "usage: nbd-random-read URI COUNT DEPTH [RANGE [SEED]]\n");
		return 2;
	}
	const uint64_t count = std::strtoull(argv[2], nullptr, 10);
	const uint64_t depth = std::strtoull(argv[3], nullptr, 10);
	nbd_handle *nbd = nbd_create();
	if (!nbd || nbd_connect_uri(nbd, argv[1]) == -1) {
		std::fprintf(stderr, "nbd-random-read: %s\n", nbd_get_error());
		return 1;
	}
	int64_t size = nbd_get_size(nbd);
	uint64_t range = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : uint64_t(size);
	if (size < int64_t(kRead) || range < kRead || range > uint64_t(size) || depth == 0) {
		std::fprintf(stderr, "nbd-random-read: bad range or depth for an export of %lld bytes\n", (long long)size);
		return 2;
	}
	std::mt19937_64 rng(argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 1);
	std::uniform_int_distribution<uint64_t> block(0, range / kRead - 1);
	std::vector<std::vector<char>> buffers(depth, std::vector<char>(kRead));
	Progress progress;
	uint64_t issued = 0;
	auto start = std::chrono::steady_clock::now();
	while (issued < count || progress.inFlight > 0) {
		while (issued < count && progress.inFlight < depth) {
			char *buf = buffers[issued % depth].data(); // the contents are not looked at
			if (nbd_aio_pread(nbd, buf, kRead, block(rng) * kRead, nbd_completion_callback{.callback = done, .user_data = &progress, .free = nullptr},
					  0) == -1) {
				std::fprintf(stderr, "nbd-random-read: %s\n", nbd_get_error());
				return 1;
			}
			progress.inFlight++;
			issued++;
		}
		if (nbd_poll(nbd, -1) == -1) {
			std::fprintf(stderr, "nbd-random-read: %s\n", nbd_get_error());
			return 1;
		}
	}
	double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
	nbd_shutdown(nbd, 0);
	nbd_close(nbd);
	std::printf("{\"reads\": %llu, \"depth\": %llu, \"seconds\": %.3f, \"iops\": %.0f, \"mib_per_s\": %.1f, "
		    "\"errors\": %llu}\n",
		    (unsigned long long)count, (unsigned long long)depth, seconds, double(count) / seconds,
		    double(count * kRead) / seconds / (1 << 20), (unsigned long long)progress.errors);
	return progress.errors ? 1 : 0;
}
