#include "compression.h"

#include <charconv>

namespace virtsnap::store {

namespace {

constexpr int kMinZstdLevel = -10;
constexpr int kMaxZstdLevel = 19;

} // namespace

Result<Compression> Compression::parse(std::string_view text)
{
	auto refuse = [&] {
		return fail(errc::kInvalidParameterValue,
			    "compression '" + std::string(text) + "' is not one of zstd:LEVEL (1 to " +
				    std::to_string(kMaxZstdLevel) + ", or -1 to " + std::to_string(kMinZstdLevel) +
				    "), lz4, none");
	};
	if (text == "none")
		return Compression{Method::None, 0};
	if (text == "lz4")
		return Compression{Method::Lz4, 0};
	if (text == "zstd")
		return Compression{Method::Zstd, 1};
	if (!text.starts_with("zstd:"))
		return refuse();
	std::string_view digits = text.substr(5);
	int level = 0;
	auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), level);
	// Level 0 means "zstd's default" to zstd, which is not a level to
	// write down: refused, so that a store's config says what it does.
	if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || level == 0 ||
	    level < kMinZstdLevel || level > kMaxZstdLevel)
		return refuse();
	return Compression{Method::Zstd, level};
}

std::string Compression::name() const
{
	switch (method) {
	case Method::None:
		return "none";
	case Method::Lz4:
		return "lz4";
	case Method::Zstd:
		break;
	}
	return "zstd:" + std::to_string(level);
}

} // namespace virtsnap::store
