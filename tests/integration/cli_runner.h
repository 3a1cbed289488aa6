// Runs the virtsnap binary under test as a user would, with stdout and
// stderr kept apart: stdout is the JSON contract, stderr the error line.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "json/json.h"

namespace virtsnap::test {

struct CliResult {
	int status = -1;
	std::string out;
	std::string err;
	virtsnap::Json json() const;
};

// argv excludes the program; VIRTSNAP_BIN (set by meson) names it.
// With `signalAfterMs` >= 0, `signal` is sent that long after the start.
CliResult runVirtsnap(const std::vector<std::string> &args, const std::vector<std::string> &env = {},
		      int signal = 0, int signalAfterMs = -1);

// The snapshots of a create-snapshots answer by disk ("vda": {...}).
std::map<std::string, virtsnap::Json> byDisk(const virtsnap::Json &doc);

} // namespace virtsnap::test
