// virtsnap: the command line. Every command prints its result on stdout
// (JSON unless --output table) and any error as one line on stderr, with a
// non-zero exit: 1 for a failed request, 2 for a malformed command line.
//
// When virtsnapd answers on its socket, commands go to it; otherwise they
// run in this process, where a snapshot needs --wait (its data moves before
// the command returns).
//
// Where the store, key and socket are: the option, else the environment,
// else the config file (core/config.h), else the built-in default.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/arguments.h"
#include "core/cancel.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/ids.h"
#include "daemon/commands.h"
#include "daemon/server.h"
#include "daemon/service.h"
#include "daemon_client.h"
#include "output.h"

namespace virtsnap::cli {

namespace {

const std::vector<OptionSpec> kGlobalOptions = {
	{"store"}, {"key-file"}, {"state-dir"}, {"output"}, {"socket"}, {"config"}, {"help", false}, {"version", false},
};

// Commands of the CLI alone, outside the service: events needs the daemon.
const std::map<std::string, daemon::CommandSpec> &localCommands()
{
	static const std::map<std::string, daemon::CommandSpec> table = {
		{"events", {"print virtsnapd's events as they happen (needs the daemon)", {{"follow", false}}, "", {}}},
	};
	return table;
}

// The spec of a command as named in the tables, or null.
const daemon::CommandSpec *findCommand(const std::string &name)
{
	if (auto it = localCommands().find(name); it != localCommands().end())
		return &it->second;
	return daemon::findCommand(name);
}

struct Settings {
	daemon::StoreLocation location;
	daemon::ServiceOptions service; // in-process runs
	std::string socket;
	OutputFormat output = OutputFormat::Json;
};

std::string human(double bytes)
{
	const char *units[] = {"B", "KB", "MB", "GB", "TB"};
	int u = 0;
	while (bytes >= 1000 && u < 4) {
		bytes /= 1000;
		u++;
	}
	char buf[32];
	std::snprintf(buf, sizeof(buf), "%.1f %s", bytes, units[u]);
	return buf;
}

// A progress bar with rate and ETA on stderr, when a person is watching.
class ProgressBar
{
public:
	explicit ProgressBar(std::string what) : what_(std::move(what)), tty_(::isatty(2)) {}
	~ProgressBar()
	{
		if (drawn_)
			std::fprintf(stderr, "\n");
	}
	// `total` in bytes, or 100 with `percentOnly`.
	void update(uint64_t done, uint64_t total, bool percentOnly = false)
	{
		if (!tty_)
			return;
		std::lock_guard lock(mutex_);
		auto now = std::chrono::steady_clock::now();
		if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total)
			return;
		last_ = now;
		drawn_ = true;
		double secs = std::chrono::duration<double>(now - start_).count();
		double frac = total ? double(done) / double(total) : 1.0;
		int width = 30, filled = int(frac * width);
		std::string bar = std::string(size_t(filled), '#') + std::string(size_t(width - filled), '.');
		std::string rate = percentOnly || secs <= 0 ? "" : human(double(done) / secs) + "/s";
		std::string eta = "--:--";
		if (frac > 0.01 && frac < 1) {
			int left = int(secs / frac * (1 - frac));
			char buf[16];
			std::snprintf(buf, sizeof(buf), "%d:%02d", left / 60, left % 60);
			eta = buf;
		}
		std::fprintf(stderr, "\r%s [%s] %3d%% %s ETA %s ", what_.c_str(), bar.c_str(), int(frac * 100),
			     rate.c_str(), eta.c_str());
	}

private:
	std::string what_;
	bool tty_;
	bool drawn_ = false;
	std::mutex mutex_;
	std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_;
};

int printError(const Error &e)
{
	std::fprintf(stderr, "virtsnap: %s\n", e.toString().c_str());
	return 1;
}

void printDoc(const Settings &ctx, const std::string &command, const Json &doc)
{
	auto spec = daemon::commands().find(command);
	if (spec != daemon::commands().end() && !spec->second.listKey.empty())
		print(ctx.output, doc, spec->second.listKey, spec->second.columns);
	else
		print(ctx.output, doc);
}

int cmdEvents(const Settings &ctx)
{
	auto client = DaemonClient::connect(ctx.socket);
	if (!client)
		return printError(client.error());
	if (!*client)
		return printError(Error{errc::kIncorrectState, "no virtsnapd answers on " + ctx.socket +
								       " (start it with: virtsnapd)"});
	auto r = (*client)->follow([](const std::string &line) {
		std::printf("%s\n", line.c_str());
		std::fflush(stdout);
		return !cancelRequested();
	});
	// Stopped by a signal is how --follow ends: not an error.
	return r || cancelRequested() ? 0 : printError(r.error());
}

// Polls the daemon until the snapshots are no longer pending.
Result<Json> waitThroughDaemon(DaemonClient &client, const std::vector<std::string> &ids)
{
	ProgressBar bar("waiting");
	for (;;) {
		auto describe = Arguments::fromJson("describe-snapshots", "{}", {});
		describe->set("snapshot-id", ids);
		VS_ASSIGN(auto reply, client.call(*describe));
		if (!reply.getBool("ok").value_or(false))
			return fail(reply.get("error").getString("code").value_or(errc::kInternal),
				    reply.get("error").getString("message").value_or(""));
		Json list = reply.get("result").get("Snapshots");
		bool pending = false;
		int progress = 0;
		for (size_t i = 0; i < list.size(); i++) {
			pending |= list.at(i).getString("State") == "pending";
			progress += std::atoi(list.at(i).getString("Progress").value_or("0").c_str());
		}
		bar.update(uint64_t(progress), 100 * std::max<size_t>(1, list.size()), true);
		if (!pending || cancelRequested())
			return list;
		std::this_thread::sleep_for(std::chrono::milliseconds(250));
	}
}

int viaDaemon(const Settings &ctx, DaemonClient &client, const Arguments &args)
{
	auto reply = client.call(args);
	if (!reply)
		return printError(reply.error());
	Json doc = reply->get("result");
	// copy-snapshot is asynchronous too, and waits as create-snapshot does.
	bool oneSnapshot = args.command() == "create-snapshot" || args.command() == "copy-snapshot";
	bool isCreate = oneSnapshot || args.command() == "create-snapshots";
	if (isCreate && args.has("wait") && reply->getBool("ok").value_or(false)) {
		std::vector<std::string> ids;
		if (oneSnapshot) {
			ids.push_back(doc.getString("SnapshotId").value_or(""));
		} else {
			for (size_t i = 0; i < doc.get("Snapshots").size(); i++)
				ids.push_back(doc.get("Snapshots").at(i).getString("SnapshotId").value_or(""));
		}
		auto done = waitThroughDaemon(client, ids);
		if (!done)
			return printError(done.error());
		if (oneSnapshot) {
			doc = done->at(0);
		} else {
			doc = Json::object();
			doc.set("Snapshots", *done);
		}
		printDoc(ctx, args.command(), doc);
		for (size_t i = 0; i < done->size(); i++)
			if (done->at(i).getString("State") == "error")
				return printError(Error{errc::kIncorrectState,
							"snapshot " + done->at(i).getString("SnapshotId").value_or("") +
								" failed: " +
								done->at(i).getString("StateMessage").value_or("")});
		return 0;
	}
	if (!doc.isNull())
		printDoc(ctx, args.command(), doc);
	if (!reply->getBool("ok").value_or(false))
		return printError(Error{reply->get("error").getString("code").value_or(errc::kInternal),
					reply->get("error").getString("message").value_or("")});
	return 0;
}

int inProcess(const Settings &ctx, const daemon::CommandSpec &spec, const Arguments &args)
{
	// copy-snapshot runs in process only with --wait, as creates do.
	bool isCreate = args.command() == "create-snapshot" || args.command() == "create-snapshots" ||
			args.command() == "copy-snapshot";
	if (isCreate && !args.has("wait"))
		return printError(Error{errc::kIncorrectState,
					"no virtsnapd answers on " + ctx.socket +
						"; start it (virtsnapd), or add --wait to take the snapshot in this process"});
	const daemon::StoreLocation &location = ctx.location;
	std::unique_ptr<daemon::Service> service;
	if (spec.needsStore) {
		auto opened = daemon::Service::open(location, ctx.service, nullptr);
		if (!opened)
			return printError(opened.error());
		service = std::move(*opened);
	} else {
		service = daemon::Service::unopened(location, ctx.service);
	}
	if (isCreate)
		service->recoverInterruptedJobs();
	ProgressBar bar(isCreate ? "snapshot" : "restore");
	auto reply = service->run(args, std::to_string(::getuid()),
				  [&](uint64_t done, uint64_t total) { bar.update(done, total); });
	if (!reply)
		return printError(reply.error());
	printDoc(ctx, args.command(), reply->doc);
	if (reply->failure)
		return printError(*reply->failure);
	return 0;
}

// The name a user types: two-word commands are one name in the table.
std::string typedName(const std::string &name)
{
	if (name == "catalog-rebuild")
		return "catalog rebuild";
	if (name == "wait-snapshot-completed")
		return "wait snapshot-completed";
	return name;
}

void usage(FILE *out)
{
	std::fprintf(out, "usage: virtsnap [--store DIR|URL] [--key-file FILE] [--state-dir DIR] [--socket PATH]\n"
			  "                [--config FILE] [--output json|table] COMMAND [options]\n\ncommands:\n");
	// The names' column fits the longest, with two spaces after it.
	int width = 0;
	for (const auto &[name, c] : daemon::commands())
		width = std::max(width, int(typedName(name).size()) + 1);
	auto show = [&](const std::string &name, const daemon::CommandSpec &c) {
		std::string opts;
		for (const OptionSpec &o : c.options)
			opts += " [--" + o.name + (o.takesValue ? " X" : "") + "]" + (o.repeatable ? "..." : "");
		std::fprintf(out, "  %-*s %s\n  %-*s%s\n", width, name.c_str(), c.summary.c_str(), width, "",
			     opts.c_str());
	};
	for (const auto &[name, c] : localCommands())
		show(name, c);
	for (const auto &[name, c] : daemon::commands())
		show(typedName(name), c);
	const Config defaults;
	std::fprintf(out,
		     "\nThe store (a directory, rados://POOL[/NS], s3://BUCKET[/PREFIX]?endpoint=URL) is --store, else\n"
		     "$VIRTSNAP_STORE, else [store] path in the config file, else %s.\n"
		     "The key file is --key-file, else $VIRTSNAP_KEY_FILE, else [store] key-file, else %s.\n"
		     "The state directory (this host's catalog) is --state-dir, else $VIRTSNAP_STATE_DIR, else\n"
		     "[store] state-dir, else the store's own directory, or %s for a remote store.\n"
		     "The daemon's socket is --socket, else $VIRTSNAP_SOCKET, else [daemon] socket, else %s.\n"
		     "The config file is --config, else $VIRTSNAP_CONFIG, else %s (see virtsnap.conf(5)).\n",
		     defaults.storePath.c_str(), defaults.keyFile.c_str(), kRemoteStateDir, defaults.socket.c_str(),
		     kConfigPath);
}

// For the bash completion, which asks the binary so it never goes stale:
//   virtsnap --complete            the commands, one per line
//   virtsnap --complete COMMAND    its options, then the global ones
//   virtsnap --complete --global   the global options
// An option line is "--NAME<TAB>value|flag", plus "<TAB>repeatable".
int complete(const std::vector<std::string> &words)
{
	auto printOptions = [](const std::vector<OptionSpec> &options) {
		for (const OptionSpec &o : options)
			std::printf("--%s\t%s%s\n", o.name.c_str(), o.takesValue ? "value" : "flag",
				    o.repeatable ? "\trepeatable" : "");
	};
	if (words.empty()) {
		for (const auto &[name, c] : localCommands())
			std::printf("%s\n", name.c_str());
		for (const auto &[name, c] : daemon::commands())
			std::printf("%s\n", typedName(name).c_str());
		return 0;
	}
	if (words.size() == 1 && words[0] == "--global") {
		printOptions(kGlobalOptions);
		return 0;
	}
	std::string name = words[0];
	for (size_t i = 1; i < words.size(); i++)
		name += "-" + words[i];
	const daemon::CommandSpec *spec = findCommand(name);
	if (!spec)
		return 2;
	printOptions(spec->options);
	printOptions(kGlobalOptions);
	return 0;
}

// The command named on the line, so that its options can be known before
// the line is parsed; two-word commands become one name in `raw`.
std::string commandName(std::vector<std::string> &raw)
{
	for (size_t i = 0; i + 1 < raw.size(); i++) {
		if ((raw[i] == "catalog" && raw[i + 1] == "rebuild") ||
		    (raw[i] == "wait" && raw[i + 1] == "snapshot-completed")) {
			raw[i] += "-" + raw[i + 1];
			raw.erase(raw.begin() + long(i) + 1);
			break;
		}
	}
	for (size_t i = 0; i < raw.size(); i++) {
		if (raw[i].rfind("--", 0) == 0) {
			std::string opt = raw[i].substr(2);
			bool globalWithValue = std::any_of(kGlobalOptions.begin(), kGlobalOptions.end(),
							   [&](const OptionSpec &o) { return o.name == opt && o.takesValue; });
			if (raw[i].find('=') == std::string::npos && globalWithValue)
				i++;
			continue;
		}
		return raw[i];
	}
	return "";
}

// Paths are the caller's: relative ones are relative to where virtsnap
// runs, not to virtsnapd's working directory (/), so they go out absolute.
void makePathsAbsolute(Arguments &args)
{
	for (const char *option :
	     {"target", "target-dir", "qmp-socket", "qga-socket", "output-file", "block-data", "nbd-socket",
	      "encryption-secret-file", "account-key-file"}) {
		std::string value = args.get(option);
		if (value.empty() || value.front() == '/')
			continue;
		std::error_code ec;
		std::filesystem::path absolute = std::filesystem::absolute(value, ec);
		if (!ec)
			args.set(option, {absolute.lexically_normal().string()});
	}
}

// --policy-details file://PATH is read here, as the caller, as the AWS CLI
// reads it: virtsnapd, root, is sent the JSON and opens no file for it.
Result<void> inlineFileOptions(Arguments &args)
{
	std::string value = args.get("policy-details");
	if (value.rfind("file://", 0) != 0)
		return {};
	VS_ASSIGN(Bytes bytes, readFile(value.substr(7)));
	if (bytes.size() > (1u << 20))
		return fail(errc::kInvalidParameterValue, "--policy-details " + value + " is larger than 1 MiB");
	args.set("policy-details", {std::string(bytes.begin(), bytes.end())});
	return {};
}

int run(int argc, char **argv)
{
	std::vector<std::string> raw(argv + 1, argv + argc);
	if (!raw.empty() && raw[0] == "--complete")
		return complete({raw.begin() + 1, raw.end()});
	std::string name = commandName(raw);
	const daemon::CommandSpec *spec = findCommand(name);
	std::vector<OptionSpec> specs = kGlobalOptions;
	if (spec)
		specs.insert(specs.end(), spec->options.begin(), spec->options.end());
	auto args = Arguments::parse(raw, specs);
	if (!args) {
		std::fprintf(stderr, "virtsnap: %s\n", args.error().toString().c_str());
		return 2;
	}
	if (args->has("version")) {
		std::printf("virtsnap %s\n", VIRTSNAP_VERSION);
		return 0;
	}
	if (args->has("help") || name.empty()) {
		usage(name.empty() && !args->has("help") ? stderr : stdout);
		return name.empty() && !args->has("help") ? 2 : 0;
	}
	if (!spec) {
		std::fprintf(stderr, "virtsnap: InvalidParameterValue: unknown command '%s' (see virtsnap --help)\n",
			     name.c_str());
		return 2;
	}
	auto config = loadEffectiveConfig(args->get("config"));
	if (!config)
		return printError(config.error());
	Settings ctx;
	ctx.location = daemon::storeLocationFrom(*args, *config);
	ctx.service = daemon::serviceOptionsFrom(*config);
	ctx.socket = args->get("socket", config->socket.string());
	std::string output = args->get("output", "json");
	if (output != "json" && output != "table") {
		std::fprintf(stderr, "virtsnap: InvalidParameterValue: --output must be json or table\n");
		return 2;
	}
	ctx.output = output == "table" ? OutputFormat::Table : OutputFormat::Json;
	for (const char *global : {"store", "key-file", "state-dir", "output", "socket", "config"})
		args->erase(global);
	// A domain named without --connect is on the config's libvirt URI.
	bool takesConnect = std::any_of(spec->options.begin(), spec->options.end(),
					[](const OptionSpec &o) { return o.name == "connect"; });
	if (takesConnect && args->has("domain") && !args->has("connect"))
		args->set("connect", {config->libvirtUri});

	makePathsAbsolute(*args);
	if (auto inlined = inlineFileOptions(*args); !inlined)
		return printError(inlined.error());
	if (name == "events")
		return cmdEvents(ctx);
	if (spec->cliOnly)
		return inProcess(ctx, *spec, *args);
	auto client = DaemonClient::connect(ctx.socket);
	if (!client)
		return printError(client.error());
	if (*client)
		return viaDaemon(ctx, **client, *args);
	return inProcess(ctx, *spec, *args);
}

} // namespace

} // namespace virtsnap::cli

int main(int argc, char **argv)
{
	virtsnap::installCancelHandlers();
	return virtsnap::cli::run(argc, argv);
}
