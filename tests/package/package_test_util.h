// Helpers of the tests of what the package installs beside the binaries
// (completion, man pages, unit, examples): run the built binaries, read
// source files. Paths come from meson (VIRTSNAP_BIN, VIRTSNAPD_BIN,
// VIRTSNAP_SOURCE_DIR, VIRTSNAPD_UNIT).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/test_env.h"

namespace virtsnap::test {

// Runs argv with stdout alone captured (stderr discarded); the exit status.
inline int runStdout(const std::vector<std::string> &argv, std::string *out)
{
	std::vector<std::string> wrapped = {"sh", "-c", "exec \"$0\" \"$@\" 2>/dev/null"};
	wrapped.insert(wrapped.end(), argv.begin(), argv.end());
	return runCommand(wrapped, out);
}

// An option line of "virtsnap --complete COMMAND".
struct CompletedOption {
	std::string name; // with the dashes
	bool takesValue = false;
	bool repeatable = false;
};

inline std::vector<CompletedOption> parseOptionLines(const std::string &text)
{
	std::vector<CompletedOption> out;
	for (const std::string &line : lines(text)) {
		std::vector<std::string> fields;
		std::istringstream in(line);
		for (std::string f; std::getline(in, f, '\t');)
			fields.push_back(f);
		EXPECT_GE(fields.size(), 2u) << "bad option line: " << line;
		if (fields.size() < 2)
			continue;
		out.push_back({fields[0], fields[1] == "value", fields.size() > 2 && fields[2] == "repeatable"});
	}
	return out;
}

} // namespace virtsnap::test
