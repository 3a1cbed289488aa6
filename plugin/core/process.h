// Runs a helper program (qemu-img) without a shell: argv goes straight to
// exec, so no quoting problem and nothing secret is ever passed there.
#pragma once

#include <string>
#include <vector>

#include "error.h"

namespace virtsnap {

// Runs argv[0] (looked up in PATH) and waits. Returns its stdout; on a
// non-zero exit fails with `errorCode` and the last line of its stderr.
Result<std::string> runProgram(const std::vector<std::string> &argv, const char *errorCode = errc::kIo);

} // namespace virtsnap
