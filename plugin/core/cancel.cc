#include "cancel.h"

#include <signal.h>

#include <atomic>

namespace virtsnap {

namespace {

std::atomic<int> requested{0};

void onSignal(int sig)
{
	requested.store(sig);
}

} // namespace

void installCancelHandlers()
{
	struct sigaction sa = {};
	sa.sa_handler = onSignal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);
	sigaction(SIGHUP, &sa, nullptr);
}

bool cancelRequested()
{
	return requested.load() != 0;
}

int cancelSignal()
{
	return requested.load();
}

} // namespace virtsnap
