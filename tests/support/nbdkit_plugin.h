// Tests that need nbdkit to load virtsnap's plugin. Debian's nbdkit is not
// sanitized and cannot load a plugin that is (its sanitizer runtime and
// coverage hooks would be missing): in the sanitizer builds these tests
// skip, and tests/run's ASan run leaves them out by name, so CI counts no
// skip.
#pragma once

#include <gtest/gtest.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define VS_PLUGIN_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define VS_PLUGIN_SANITIZED 1
#endif
#endif

#ifdef VS_PLUGIN_SANITIZED
#define SKIP_WHERE_NBDKIT_CANNOT_LOAD_THE_PLUGIN() GTEST_SKIP() << "nbdkit cannot load a sanitized plugin"
#else
#define SKIP_WHERE_NBDKIT_CANNOT_LOAD_THE_PLUGIN() static_cast<void>(0)
#endif
