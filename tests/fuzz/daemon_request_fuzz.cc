// A line on virtsnapd's socket, through the command table's option parsing
// and into the typed requests the handlers take. Nothing runs.
#include "daemon/requests.h"
#include "fuzz_util.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	auto args = daemon::parseRequestLine(std::string(fuzz::textOf(data, size)));
	if (!args)
		return 0;
	// What goes to the daemon as JSON must come back the same.
	(void)args->toJson();
	const std::string &command = args->command();
	if (command == "create-snapshot" || command == "create-snapshots")
		(void)daemon::parseCreate(*args, command == "create-snapshot", "qemu:///system");
	else if (command == "describe-snapshots")
		(void)daemon::parseDescribe(*args);
	else if (command.starts_with("wait-"))
		(void)daemon::parseWait(*args);
	else if (command == "gc")
		(void)daemon::parseGc(*args);
	else if (command == "get-lifecycle-policies")
		(void)daemon::parsePolicyFilter(*args);
	// PolicyDetails and the crons in them, checked at a fixed time so a
	// crash reproduces.
	if (args->has("policy-details"))
		(void)daemon::parsePolicyDetailsOption(*args, daemon::UtcTime(std::chrono::seconds(1796000000)));
	if (args->has("policy-id"))
		(void)daemon::parsePolicyId(*args);
	if (args->has("volume-id"))
		(void)daemon::parseVolumeIds(*args);
	if (args->has("qmp-socket") || args->has("domain"))
		(void)daemon::parseTarget(*args, "qemu:///system");
	return 0;
}
