// Every command virtsnap knows, with its options: one table for the command
// line, the daemon and the in-process runner, so a command is parsed by the
// same specs wherever it runs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/arguments.h"

namespace virtsnap::daemon {

struct CommandSpec {
	std::string summary;
	std::vector<OptionSpec> options;
	// Table output: the list member whose objects are rows, and columns.
	std::string listKey;
	std::vector<std::string> columns;
};

const std::map<std::string, CommandSpec> &commands();

} // namespace virtsnap::daemon
