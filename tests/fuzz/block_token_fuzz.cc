// What a caller hands the block API as text: --block-token and --next-token
// (engine/block_tokens.h, block_api.h), and the base64 under both. Any text
// is refused or accepted without harm; only what a listing would have
// printed is accepted, and each spelling is the one canonical one.
#include "engine/block_api.h"
#include "store_fuzz_util.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const engine::BlockTokens tokens(fuzz::testDomain());
	const std::string text(reinterpret_cast<const char *>(data), size);
	const std::string id = "snap-0123456789abcdef0";
	crypto::Digest identity{};
	identity[0] = 1;
	const engine::TimePoint now{std::chrono::seconds(1'800'000'000)};

	auto decoded = crypto::fromBase64(text);
	if (decoded)
		fuzz::check(crypto::base64(*decoded) == text, "base64 accepts only its canonical spelling");
	auto again = crypto::fromBase64(crypto::base64(std::span(data, size)));
	fuzz::check(size == 0 || (again && *again == Bytes(data, data + size)), "base64 round-trips");

	if (tokens.check(text, id, 7, identity, now)) {
		fuzz::check(decoded && decoded->size() == 41, "an accepted token decodes");
		engine::TimePoint expiry{std::chrono::seconds(getLe64(decoded->data() + 1))};
		fuzz::check(tokens.mint(id, 7, identity, expiry) == text, "only a minted token is accepted");
	}
	if (auto start = engine::parseBlockCursor(text))
		fuzz::check(engine::blockCursor(*start) == text, "a cursor has one spelling");
	return 0;
}
