// The store's choice of compressor for the chunks it writes (config.json
// "compression", FORMAT.md "Chunks"). It only steers writers: a reader
// decodes every chunk by its own header's flags, whatever the store says.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace virtsnap::store {

struct Compression {
	enum class Method : uint8_t { None, Zstd, Lz4 };

	Method method = Method::Zstd;
	// zstd's level: 1 (the default) to 19, or -1 to -10 (zstd's "fast"
	// levels: less ratio, more speed). Unused by the other methods.
	int level = 1;

	// "zstd:1", "zstd:-3", "lz4", "none" (and "zstd", meaning "zstd:1").
	// InvalidParameterValue, naming the text, for anything else.
	static Result<Compression> parse(std::string_view text);
	// The form parse() reads: "zstd:1", "zstd:-3", "lz4", "none".
	std::string name() const;
	bool operator==(const Compression &) const = default;
};

} // namespace virtsnap::store
