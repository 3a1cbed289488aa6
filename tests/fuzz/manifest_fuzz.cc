// Manifests, sealed and opened: whatever parseManifest accepts must serialise
// to text it accepts again, unchanged.
#include "store/manifest.h"
#include "store_fuzz_util.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz::openBothWays(store::ObjectType::Manifest, "snap-0123456789abcdef0", std::span(data, size),
			   fuzz::testDomain().encKey, [](std::span<const uint8_t> plain) {
				   auto m = store::parseManifest(fuzz::textOf(plain.data(), plain.size()));
				   if (!m)
					   return;
				   std::string text = store::serializeManifest(*m);
				   auto again = store::parseManifest(text);
				   fuzz::check(again.has_value(), "a serialised manifest parses");
				   fuzz::check(store::serializeManifest(*again) == text, "a manifest round-trips");
			   });
	return 0;
}
