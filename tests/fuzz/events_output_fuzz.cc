// An event handler's output as the daemon forwards it to its journal: any
// bytes in any pieces, always whole bounded lines after the prefix.
#include "events/output_forwarder.h"
#include "fuzz_util.h"

using namespace virtsnap;
using events::OutputForwarder;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const std::string prefix = "handler 10-fuzz: ";
	size_t forwarded = 0;
	OutputForwarder forwarder(prefix, [&](const std::string &line) {
		fuzz::check(line.starts_with(prefix) && line.back() == '\n',
			    "a forwarded line is prefixed and whole");
		fuzz::check(line.size() <= prefix.size() + OutputForwarder::kMaxLine + 1, "a forwarded line is bounded");
		forwarded += line.size() - prefix.size() - 1;
	});
	size_t piece = 1 + data[0] % 200;
	for (size_t at = 1; at < size; at += piece)
		forwarder.feed(reinterpret_cast<const char *>(data) + at, std::min(piece, size - at));
	forwarder.finish();
	// The last line may cross the limit; nothing after it does.
	fuzz::check(forwarded <= OutputForwarder::kMaxForwarded + OutputForwarder::kMaxLine, "the output is bounded");
	return 0;
}
