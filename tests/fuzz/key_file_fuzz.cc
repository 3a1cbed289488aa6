// Key files' content: whatever parses is the one spelling of its key.
#include "core/bytes.h"
#include "crypto/crypto.h"
#include "fuzz_util.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view text = fuzz::textOf(data, size);
	auto key = crypto::parseKeyFile(text, "fuzz.key");
	if (!key)
		return 0;
	fuzz::check(text == "virtsnap-key-v1 " + toHex(key->bytes()) + "\n", "a key file has one spelling");
	return 0;
}
