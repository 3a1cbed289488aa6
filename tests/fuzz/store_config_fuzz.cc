// The store's config.json, as Store::open reads it before anything else.
#include "fuzz_util.h"
#include "store/store.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	auto config = store::parseStoreConfig(std::span(data, size), "fuzz-store");
	if (!config)
		return 0;
	fuzz::check(!config->storeId.empty() && fromHex(config->defaultDomainHex).has_value(),
		    "an accepted config names the store and its key domain");
	// Store::open sizes its chunks by it, and init allows no other.
	fuzz::check(config->chunkSize >= store::kMinChunkSize && config->chunkSize <= store::kMaxChunkSize,
		    "an accepted config has a chunk size init allows");
	return 0;
}
