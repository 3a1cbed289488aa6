// What the fuzz targets share: a crash that names the property a parser
// broke (libFuzzer records the input).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace virtsnap::fuzz {

inline std::string_view textOf(const uint8_t *data, size_t size)
{
	return std::string_view(reinterpret_cast<const char *>(data), size);
}

// A broken invariant: abort, so libFuzzer saves the input.
[[noreturn]] inline void broken(const std::string &what)
{
	std::fprintf(stderr, "fuzz target invariant broken: %s\n", what.c_str());
	std::abort();
}

inline void check(bool ok, const char *what)
{
	if (!ok)
		broken(what);
}

} // namespace virtsnap::fuzz
