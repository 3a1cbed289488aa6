// virtsnapd: serves virtsnap's commands on a unix socket, runs snapshot
// transfers in the background and emits their events.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/arguments.h"
#include "core/cancel.h"
#include "server.h"

namespace {

using namespace virtsnap;

std::string fromEnv(const char *name, const char *fallback)
{
	const char *v = std::getenv(name);
	return v && *v ? v : fallback;
}

void usage(FILE *out)
{
	std::fprintf(out,
		     "usage: virtsnapd [--store DIR] [--key-file FILE] [--socket PATH] [--events-log FILE]\n"
		     "                 [--events-dir DIR] [--handler-timeout SECONDS] [--max-parallel-jobs N]\n"
		     "                 [--foreground]\n\n"
		     "Defaults: --store $VIRTSNAP_STORE or /var/lib/virtsnap, --key-file $VIRTSNAP_KEY_FILE or\n"
		     "/etc/virtsnap/store.key, --socket $VIRTSNAP_SOCKET or %s,\n"
		     "--events-log /var/log/virtsnap/events.jsonl, --events-dir /etc/virtsnap/events.d,\n"
		     "--handler-timeout 10, --max-parallel-jobs 2. Without --foreground it detaches.\n",
		     daemon::kDefaultSocket);
}

int run(int argc, char **argv)
{
	std::vector<std::string> raw(argv + 1, argv + argc);
	auto args = Arguments::parse(raw, {{"store"},
					   {"key-file"},
					   {"socket"},
					   {"events-log"},
					   {"events-dir"},
					   {"handler-timeout"},
					   {"max-parallel-jobs"},
					   {"foreground", false},
					   {"help", false}});
	if (!args || !args->command().empty()) {
		std::fprintf(stderr, "virtsnapd: %s\n",
			     args ? "takes no arguments but options" : args.error().toString().c_str());
		return 2;
	}
	if (args->has("help")) {
		usage(stdout);
		return 0;
	}
	std::string store = args->get("store", fromEnv("VIRTSNAP_STORE", "/var/lib/virtsnap"));
	std::string keyFile = args->get("key-file", fromEnv("VIRTSNAP_KEY_FILE", "/etc/virtsnap/store.key"));
	std::string socket = args->get("socket", fromEnv("VIRTSNAP_SOCKET", daemon::kDefaultSocket));
	events::Dispatcher::Options eventOptions;
	eventOptions.logFile = args->get("events-log", "/var/log/virtsnap/events.jsonl");
	eventOptions.handlerDir = args->get("events-dir", "/etc/virtsnap/events.d");
	double handlerSecs = std::atof(args->get("handler-timeout", "10").c_str());
	int jobs = std::atoi(args->get("max-parallel-jobs", "2").c_str());
	if (!(handlerSecs > 0) || jobs < 1 || jobs > 64) {
		std::fprintf(stderr, "virtsnapd: InvalidParameterValue: --handler-timeout must be > 0 and "
				     "--max-parallel-jobs from 1 to 64\n");
		return 2;
	}
	eventOptions.handlerTimeout = std::chrono::milliseconds(int64_t(handlerSecs * 1000));

	// Detach before any thread starts.
	if (!args->has("foreground") && ::daemon(0, 0) != 0) {
		std::perror("virtsnapd: daemon");
		return 1;
	}
	// Signals end the daemon; they must not kill it mid-write.
	installCancelHandlers();
	::signal(SIGPIPE, SIG_IGN);

	events::Dispatcher dispatcher(eventOptions);
	daemon::ServiceOptions options;
	options.background = true;
	options.maxParallelJobs = unsigned(jobs);
	auto service = daemon::Service::open(store, keyFile, options, &dispatcher);
	if (!service) {
		std::fprintf(stderr, "virtsnapd: %s\n", service.error().toString().c_str());
		return 1;
	}
	// Listen first: a second daemon must find the first and stop before it
	// takes anyone's jobs for interrupted ones.
	auto server = daemon::Server::listen(socket, **service, dispatcher);
	if (!server) {
		std::fprintf(stderr, "virtsnapd: %s\n", server.error().toString().c_str());
		return 1;
	}
	(*service)->recoverInterruptedJobs();
	std::thread watcher([&] {
		while (!cancelRequested())
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		(*server)->stop();
	});
	std::fprintf(stderr, "virtsnapd: serving %s on %s\n", store.c_str(), socket.c_str());
	(*server)->run();
	if (!cancelRequested())
		::raise(SIGTERM);
	watcher.join();
	server->reset();
	service->reset();
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	return run(argc, argv);
}
