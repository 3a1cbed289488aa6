// Pack indexes, sealed and opened: whatever parsePackIndex accepts must
// serialise to the same index.
#include "store/pack.h"
#include "store_fuzz_util.h"

using namespace virtsnap;

namespace {

bool sameEntry(const store::PackEntry &a, const store::PackEntry &b)
{
	return a.id == b.id && a.type == b.type && a.flags == b.flags && a.offset == b.offset &&
	       a.length == b.length && a.rawLength == b.rawLength;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz::openBothWays(store::ObjectType::PackIndex, "000102030405060708090a0b0c0d0e0f", std::span(data, size),
			   fuzz::testDomain().encKey, [](std::span<const uint8_t> plain) {
				   auto index = store::parsePackIndex(plain);
				   if (!index)
					   return;
				   auto again = store::parsePackIndex(store::serializePackIndex(*index));
				   fuzz::check(again && again->packId == index->packId &&
						       std::equal(again->entries.begin(), again->entries.end(),
								  index->entries.begin(), index->entries.end(), sameEntry),
					       "a pack index round-trips");
			   });
	return 0;
}
