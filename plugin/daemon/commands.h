// Every command virtsnap knows, with its options and its handler: one table
// for the command line, the daemon and the in-process runner, so a command
// is parsed by the same specs and run by the same code wherever it runs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "context.h"
#include "core/arguments.h"

namespace virtsnap::daemon {

using Handler = Result<Reply> (*)(Context &ctx, const Call &call);

struct CommandSpec {
	std::string summary;
	std::vector<OptionSpec> options;
	// Table output: the list member whose objects are rows, and columns.
	std::string listKey;
	std::vector<std::string> columns;
	Handler handler = nullptr;
	// Works on a store that exists (all but init).
	bool needsStore = true;
	// Runs in the virtsnap command only, never through virtsnapd's socket
	// (init: a member of the group virtsnap may not make stores as root).
	bool cliOnly = false;
};

// Every command the CLI and the socket know, with its options and handler.
const std::map<std::string, CommandSpec> &commands();
// The command's spec, or null when there is none.
const CommandSpec *findCommand(const std::string &name);

} // namespace virtsnap::daemon
