// Guest-agent framing with 0xFF resync: the input is everything the agent
// says on one connection, "@ID@" standing for the id of the client's first
// guest-sync-delimited, and the client runs a freeze and thaw.
#include "fake_monitor.h"
#include "fuzz_util.h"
#include "qmp/guest_agent_client.h"

using namespace virtsnap;
using Ms = qmp::GuestAgentClient::Duration;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz::FakeMonitor monitor(fuzz::textOf(data, size), true);
	// Long timeouts: the peer hangs up after the input, so none may fire.
	auto client = qmp::GuestAgentClient::connect(fuzz::FakeMonitor::socketPath(), Ms(10000));
	if (!client)
		return 0;
	(void)(*client)->execute("guest-ping", Json(), Ms(10000));
	(void)(*client)->execute("guest-fsfreeze-freeze", Json(), Ms(10000));
	(void)(*client)->post("guest-fsfreeze-thaw", Json(), Ms(10000));
	(void)(*client)->execute("guest-fsfreeze-status", Json(), Ms(10000));
	return 0;
}
