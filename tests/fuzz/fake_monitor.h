// A peer for the protocol clients' fuzz targets: a listening unix socket in a
// temporary directory, and per input a thread that accepts one client, sends
// it the whole input and hangs up, reading (and dropping) what the client
// sends until it closes. The client thus sees every byte and then EOF, so no
// input can leave it waiting; a wait would be a bug the fuzzer reports as a
// timeout.
#pragma once

#include <string>
#include <string_view>
#include <thread>

namespace virtsnap::fuzz {

class FakeMonitor
{
public:
	// `substituteSyncId`: before sending, read the client's first command
	// (the agent's guest-sync-delimited) and put its id for each "@ID@", as
	// tests/qmp/fake_peer does, so an input can answer the sync.
	FakeMonitor(std::string_view input, bool substituteSyncId);
	~FakeMonitor();

	// The same path for every input of the process.
	static const std::string &socketPath();

private:
	std::thread thread_;
};

} // namespace virtsnap::fuzz
