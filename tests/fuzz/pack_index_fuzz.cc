// Pack indexes, sealed and opened: whatever parsePackIndex accepts must
// serialise to the same index, and name only blobs a pack can hold (the
// store reads each entry's length into memory as it is).
#include "store/chunk_codec.h"
#include "store/pack.h"
#include "store_fuzz_util.h"

using namespace virtsnap;

namespace {

void checkEntry(const store::PackEntry &e)
{
	fuzz::check(e.type == store::ChunkType::Data || e.type == store::ChunkType::IndexPage, "a known chunk type");
	fuzz::check(e.offset >= store::kPackHeaderSize && e.offset + e.length > e.offset, "a blob inside a pack");
	fuzz::check(e.length >= store::kBlobOverhead && e.length <= store::kBlobOverhead + store::kMaxChunkSize,
		    "a blob's length is one a chunk can have");
	fuzz::check(e.rawLength <= store::kMaxChunkSize, "a chunk's raw length is one a store can have");
}

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
				   for (const store::PackEntry &e : index->entries)
					   checkEntry(e);
				   auto again = store::parsePackIndex(store::serializePackIndex(*index));
				   fuzz::check(again && again->packId == index->packId &&
						       std::equal(again->entries.begin(), again->entries.end(),
								  index->entries.begin(), index->entries.end(), sameEntry),
					       "a pack index round-trips");
			   });
	return 0;
}
