// Silences one known compiler false positive around the statement it wraps,
// and nothing else: a warning that is real gets fixed, not silenced.
#pragma once

// GCC 12 at -O2/-O3 inlines std::string's operator+(const char *, string &&)
// into a memcpy it believes may copy 2^63 overlapping bytes (-Wrestrict):
// GCC bug 105329, fixed in GCC 13. Clang has no such warning.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#define VS_GCC12_BOGUS_RESTRICT_BEGIN \
	_Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wrestrict\"")
#define VS_GCC12_BOGUS_RESTRICT_END _Pragma("GCC diagnostic pop")
#else
#define VS_GCC12_BOGUS_RESTRICT_BEGIN
#define VS_GCC12_BOGUS_RESTRICT_END
#endif
