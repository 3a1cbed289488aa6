// virtsnapd: serves virtsnap's commands on a unix socket, runs snapshot
// transfers in the background and emits their events. Its settings: the
// option, else the environment (store, key file, socket), else the config
// file (core/config.h), else the built-in default.
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <thread>

#include "core/arguments.h"
#include "core/cancel.h"
#include "core/config.h"
#include "policy_timer.h"
#include "server.h"

namespace {

using namespace virtsnap;

// The daemon binds where clients look by default; both must say the same.
static_assert(std::string_view(daemon::kDefaultSocket) == "/run/virtsnap/virtsnapd.sock");

void usage(FILE *out)
{
	const Config d;
	std::fprintf(out,
		     "usage: virtsnapd [--config FILE] [--store DIR|URL] [--key-file FILE] [--state-dir DIR]\n"
		     "                 [--socket PATH] [--events-log FILE] [--events-dir DIR]\n"
		     "                 [--handler-timeout SECONDS] [--max-parallel-jobs N]\n"
		     "                 [--client-timeout SECONDS] [--policy-interval SECONDS] [--foreground]\n\n"
		     "Each setting is the option, else the config file, else the default below; the store,\n"
		     "key file, state directory and socket take $VIRTSNAP_STORE, $VIRTSNAP_KEY_FILE,\n"
		     "$VIRTSNAP_STATE_DIR and $VIRTSNAP_SOCKET over the config file.\n\n"
		     "  --config FILE             else $VIRTSNAP_CONFIG, else %s\n"
		     "  --store DIR|URL           [store] path, %s (rados://POOL[/NS], s3://BUCKET[/PREFIX]?endpoint=URL)\n"
		     "  --key-file FILE           [store] key-file, %s\n"
		     "  --state-dir DIR           [store] state-dir, else the store's directory, or %s for a remote store\n"
		     "  --socket PATH             [daemon] socket, %s\n"
		     "  --events-log FILE         [daemon] events-log, %s\n"
		     "  --events-dir DIR          [daemon] events-dir, %s\n"
		     "  --handler-timeout SECONDS [daemon] handler-timeout, %g\n"
		     "  --max-parallel-jobs N     [daemon] max-parallel-jobs, %u\n"
		     "  --client-timeout SECONDS  a client that sends no whole request for this long is let go, 60\n"
		     "  --policy-interval SECONDS how often lifecycle policies' due schedules are looked for, 60\n"
		     "  --foreground              stay in the foreground (as under systemd); else detach\n\n"
		     "See virtsnapd(8) and virtsnap.conf(5).\n",
		     kConfigPath, d.storePath.c_str(), d.keyFile.c_str(), kRemoteStateDir, d.socket.c_str(), d.eventsLog.c_str(),
		     d.eventsDir.c_str(), double(d.handlerTimeout.count()) / 1000, d.maxParallelJobs);
}

struct Settings {
	daemon::StoreLocation location;
	std::string socket;
	daemon::ServerOptions server;
	events::Dispatcher::Options events;
	daemon::ServiceOptions service;
	std::chrono::seconds policyInterval{60};
	std::string loadedFrom;
};

// The option, else the config file (and the environment where it has a
// say), else the default. Exit status 2 for a bad option, 1 for a bad file.
std::optional<Settings> settingsFrom(const Arguments &args, int *status)
{
	auto config = loadEffectiveConfig(args.get("config"));
	if (!config) {
		std::fprintf(stderr, "virtsnapd: %s\n", config.error().toString().c_str());
		*status = 1;
		return std::nullopt;
	}
	Settings s;
	s.location = daemon::storeLocationFrom(args, *config);
	s.socket = args.get("socket", config->socket.string());
	s.loadedFrom = config->loadedFrom.string();
	s.events.logFile = args.get("events-log", config->eventsLog.string());
	s.events.handlerDir = args.get("events-dir", config->eventsDir.string());
	s.events.handlerTimeout = config->handlerTimeout;
	s.service = daemon::serviceOptionsFrom(*config);
	s.service.background = true;
	s.service.maxParallelJobs = config->maxParallelJobs;
	*status = 2;
	// The same rules as in the config file, so the two never disagree.
	if (args.has("handler-timeout")) {
		auto t = parseHandlerTimeout(args.get("handler-timeout"));
		if (!t) {
			std::fprintf(stderr, "virtsnapd: %s: --handler-timeout: %s\n", t.error().code.c_str(),
				     t.error().message.c_str());
			return std::nullopt;
		}
		s.events.handlerTimeout = *t;
	}
	if (args.has("client-timeout")) {
		// The same rules as the handler timeout: seconds, fractions allowed.
		auto t = parseHandlerTimeout(args.get("client-timeout"));
		if (!t) {
			std::fprintf(stderr, "virtsnapd: %s: --client-timeout: %s\n", t.error().code.c_str(),
				     t.error().message.c_str());
			return std::nullopt;
		}
		s.server.idleTimeout = *t;
	}
	if (args.has("max-parallel-jobs")) {
		auto n = parseMaxParallelJobs(args.get("max-parallel-jobs"));
		if (!n) {
			std::fprintf(stderr, "virtsnapd: %s: --max-parallel-jobs: %s\n", n.error().code.c_str(),
				     n.error().message.c_str());
			return std::nullopt;
		}
		s.service.maxParallelJobs = *n;
	}
	if (args.has("policy-interval")) {
		char *end = nullptr;
		std::string v = args.get("policy-interval");
		long n = std::strtol(v.c_str(), &end, 10);
		if (v.empty() || *end || n < 1 || n > 86400) {
			std::fprintf(stderr, "virtsnapd: InvalidParameterValue: --policy-interval '%s' must be 1 to 86400 "
					     "seconds\n",
				     v.c_str());
			return std::nullopt;
		}
		s.policyInterval = std::chrono::seconds(n);
	}
	*status = 0;
	return s;
}

// Serves until SIGINT or SIGTERM.
int serve(const Settings &settings)
{
	events::Dispatcher dispatcher(settings.events);
	auto service = daemon::Service::open(settings.location, settings.service, &dispatcher);
	if (!service) {
		std::fprintf(stderr, "virtsnapd: %s\n", service.error().toString().c_str());
		return 1;
	}
	// Listen first: a second daemon must find the first and stop before it
	// takes anyone's jobs for interrupted ones.
	auto server = daemon::Server::listen(settings.socket, **service, dispatcher, settings.server);
	if (!server) {
		std::fprintf(stderr, "virtsnapd: %s\n", server.error().toString().c_str());
		return 1;
	}
	(*service)->recoverInterruptedJobs();
	// After recovery: a run must not find its own jobs taken for a killed
	// process's. Its first pass runs what came due while we were down.
	auto timer = std::make_unique<daemon::PolicyTimer>(**service, settings.policyInterval);
	std::thread watcher([&] {
		while (!cancelRequested())
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
		(*server)->stop();
	});
	std::fprintf(stderr, "virtsnapd: serving %s on %s (%s)\n", settings.location.url.c_str(), settings.socket.c_str(),
		     settings.loadedFrom.empty() ? "no config file" : ("config " + settings.loadedFrom).c_str());
	(*server)->run();
	if (!cancelRequested())
		::raise(SIGTERM);
	watcher.join();
	timer.reset();
	server->reset();
	service->reset();
	return 0;
}

int run(int argc, char **argv)
{
	std::vector<std::string> raw(argv + 1, argv + argc);
	auto args = Arguments::parse(raw, {{"config"},
					   {"store"},
					   {"key-file"},
					   {"state-dir"},
					   {"socket"},
					   {"events-log"},
					   {"events-dir"},
					   {"handler-timeout"},
					   {"max-parallel-jobs"},
					   {"client-timeout"},
					   {"policy-interval"},
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
	int status = 0;
	auto settings = settingsFrom(*args, &status);
	if (!settings)
		return status;
	// Detach before any thread starts.
	if (!args->has("foreground") && ::daemon(0, 0) != 0) {
		std::perror("virtsnapd: daemon");
		return 1;
	}
	// Signals end the daemon; they must not kill it mid-write.
	installCancelHandlers();
	::signal(SIGPIPE, SIG_IGN);
	// Every client is a descriptor: the soft limit (often 1024) would let
	// a thousand idle clients lock the others out, the hard one will not.
	struct rlimit files {};
	if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
		files.rlim_cur = files.rlim_max;
		(void)::setrlimit(RLIMIT_NOFILE, &files); // the soft limit is still a limit, just lower
	}
	// Each client and job is a thread of its own; glibc gives threads up
	// to 8 arenas a core, each keeping what it freed, so a busy daemon's
	// RSS crept up by some 10 MiB a round of the load test. Four arenas
	// keep it flat (DaemonLoadTest), and the data path allocates its
	// buffers once per job, so it does not contend on them.
	(void)::mallopt(M_ARENA_MAX, 4);
	return serve(*settings);
}

} // namespace

int main(int argc, char **argv)
{
	return run(argc, argv);
}
