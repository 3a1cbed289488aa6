// QMP framing with events interleaved: the input is everything QEMU says on
// one connection (greeting, replies by id, events anywhere, junk), and the
// client runs the calls a snapshot makes: commands, then waits for events.
#include "fake_monitor.h"
#include "fuzz_util.h"
#include "qmp/qmp_client.h"

using namespace virtsnap;
using Ms = qmp::QmpClient::Duration;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz::FakeMonitor monitor(fuzz::textOf(data, size), false);
	// Long timeouts: the peer hangs up after the input, so none may fire.
	auto client = qmp::QmpClient::connect(fuzz::FakeMonitor::socketPath(), Ms(10000));
	if (!client)
		return 0;
	(void)(*client)->version().dump();
	(void)(*client)->execute("query-status", Json(), Ms(10000));
	auto job = (*client)->waitEvent(
		"BLOCK_JOB_COMPLETED", [](const Json &d) { return d.getString("device") == "drive0"; }, Ms(10000));
	if (job)
		(void)job->raw.dump();
	(void)(*client)->execute("query-block-jobs", Json::object(), Ms(10000));
	for (const qmp::Event &event : (*client)->pendingEvents())
		(void)event.data.dump();
	(void)(*client)->nextEvent(Ms(10000));
	return 0;
}
