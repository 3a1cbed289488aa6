// Whether a unix socket has a listener. A socket's file appears at bind(),
// before the listen() that makes it accept: a file that exists says nothing
// about whether a connect will succeed.
#pragma once

#include <filesystem>

namespace virtsnap {

// True if a connect to `path` succeeds now; the probe connection is closed.
bool socketAnswers(const std::filesystem::path &path);

} // namespace virtsnap
