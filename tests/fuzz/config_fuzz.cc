// The config file (virtsnap.conf(5)): GKeyFile syntax and virtsnap's checks
// of each value.
#include "core/config.h"
#include "fuzz_util.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	auto config = parseConfig("fuzz.conf", std::string(fuzz::textOf(data, size)));
	if (!config)
		return 0;
	fuzz::check(config->maxParallelJobs >= 1 && config->maxParallelJobs <= 64, "max-parallel-jobs in range");
	fuzz::check(config->keyFile.is_absolute() && config->socket.is_absolute(), "paths are absolute");
	(void)stateDirFor(config->storePath, config->stateDir);
	return 0;
}
