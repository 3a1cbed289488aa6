// virtsnap: the command line. Every command prints its result on stdout
// (JSON unless --output table) and any error as one line on stderr, with a
// non-zero exit: 1 for a failed request, 2 for a malformed command line.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

#include "arguments.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "engine/resources.h"
#include "hypervisor/qemu_driver.h"
#include "engine/restore.h"
#include "engine/snapshot_engine.h"
#include "output.h"

namespace virtsnap::cli {

namespace {

using qmp::Json;

constexpr const char *kDefaultStore = "/var/lib/virtsnap";
constexpr const char *kDefaultKeyFile = "/etc/virtsnap/store.key";

const std::vector<OptionSpec> kGlobalOptions = {
	{"store"}, {"key-file"}, {"output"}, {"help", false}, {"version", false},
};

struct Command {
	const char *summary;
	std::vector<OptionSpec> options;
	std::function<Result<void>(const Arguments &)> run;
};

struct Context {
	std::string storeDir;
	std::string keyFile;
	OutputFormat output = OutputFormat::Json;
};

Context ctx;

std::string fromEnv(const char *name, const char *fallback)
{
	const char *v = std::getenv(name);
	return v && *v ? v : fallback;
}

Result<std::unique_ptr<store::Store>> openStore()
{
	return store::Store::open(ctx.storeDir, ctx.keyFile);
}

// A percentage on stderr when a person is watching; silent otherwise.
engine::ProgressFn terminalProgress(const std::string &what)
{
	if (!::isatty(2))
		return nullptr;
	auto last = std::make_shared<int>(-1);
	auto mutex = std::make_shared<std::mutex>();
	return [=](uint64_t done, uint64_t total) {
		int pct = total ? int(done * 100 / total) : 100;
		std::lock_guard lock(*mutex);
		if (pct == *last)
			return;
		*last = pct;
		std::fprintf(stderr, "\r%s %3d%%%s", what.c_str(), pct, pct == 100 ? "\n" : "");
	};
}

Result<void> cmdInit(const Arguments &args)
{
	uint32_t chunkSize = store::Store::kDefaultChunkSize;
	if (args.has("chunk-size")) {
		std::string v = args.get("chunk-size");
		char *end = nullptr;
		unsigned long n = std::strtoul(v.c_str(), &end, 10);
		if (v.empty() || *end == 'K' || *end == 'k')
			n <<= 10, end++;
		else if (*end == 'M' || *end == 'm')
			n <<= 20, end++;
		if (*end || n == 0 || n > (16ul << 20))
			return fail(errc::kInvalidParameterValue, "--chunk-size '" + v + "' is not a size");
		chunkSize = uint32_t(n);
	}
	bool keyCreated = false;
	VS_TRY(store::Store::init(ctx.storeDir, ctx.keyFile, chunkSize, &keyCreated));
	Json j = Json::object();
	j.set("Store", Json::string(ctx.storeDir));
	j.set("KeyFile", Json::string(ctx.keyFile));
	j.set("KeyCreated", Json::boolean(keyCreated));
	j.set("ChunkSize", Json::integer(chunkSize));
	print(ctx.output, j);
	return {};
}

Result<hypervisor::QuiesceMode> quiesceMode(const Arguments &args)
{
	std::string mode = args.get("quiesce", args.has("qga-socket") ? "try" : "off");
	if (mode == "off")
		return hypervisor::QuiesceMode::Off;
	if (mode != "try" && mode != "required")
		return fail(errc::kInvalidParameterValue, "--quiesce must be required, try or off");
	if (!args.has("qga-socket"))
		return fail(errc::kMissingParameter, "--quiesce " + mode + " needs --qga-socket");
	return mode == "try" ? hypervisor::QuiesceMode::Try : hypervisor::QuiesceMode::Required;
}

// The options create-snapshot and create-snapshots share.
Result<engine::SnapshotSetRequest> setRequest(const Arguments &args)
{
	engine::SnapshotSetRequest req;
	auto socket = args.require("qmp-socket");
	if (!socket)
		return std::unexpected(socket.error());
	req.qmpSocket = *socket;
	req.qgaSocket = args.get("qga-socket");
	auto mode = quiesceMode(args);
	if (!mode)
		return std::unexpected(mode.error());
	req.quiesce = *mode;
	if (args.has("freeze-timeout")) {
		std::string v = args.get("freeze-timeout");
		char *end = nullptr;
		double secs = std::strtod(v.c_str(), &end);
		if (v.empty() || *end || !(secs > 0) || secs > 3600)
			return fail(errc::kInvalidParameterValue,
				    "--freeze-timeout '" + v + "' is not a number of seconds (0 to 3600)");
		req.freezeTimeout = std::chrono::milliseconds(int64_t(secs * 1000));
	}
	req.description = args.get("description");
	if (req.description.size() > 256)
		return fail(errc::kInvalidParameterValue, "--description is longer than 256 characters");
	auto tags = engine::parseTags(args.all("tag"));
	if (!tags)
		return std::unexpected(tags.error());
	req.tags = *tags;
	req.warn = [](const std::string &w) { std::fprintf(stderr, "virtsnap: warning: %s\n", w.c_str()); };
	return req;
}

// Prints the outcomes; a failed set is also one error line and exit 1.
Result<void> reportOutcomes(const std::vector<engine::SnapshotOutcome> &outcomes, bool single)
{
	Json list = Json::array();
	for (const engine::SnapshotOutcome &o : outcomes)
		list.append(snapshotJson(o.manifest, o.state, o.stateMessage));
	if (single) {
		print(ctx.output, list.at(0));
	} else {
		Json doc = Json::object();
		doc.set("Snapshots", list);
		print(ctx.output, doc, "Snapshots",
		      {"SnapshotId", "VolumeId", "Disk", "State", "ConsistencyLevel", "CaptureMode", "BytesAdded",
		       "StateMessage"});
	}
	for (const engine::SnapshotOutcome &o : outcomes)
		if (o.state != "completed")
			return fail(errc::kIncorrectState, "snapshot " + o.manifest.snapshotId + " failed: " + o.stateMessage);
	return {};
}

Result<void> runSet(const engine::SnapshotSetRequest &req, bool single)
{
	auto s = openStore();
	if (!s)
		return std::unexpected(s.error());
	auto outcomes = engine::createSnapshots(**s, req);
	if (!outcomes)
		return std::unexpected(outcomes.error());
	return reportOutcomes(*outcomes, single);
}

Result<void> cmdCreateSnapshot(const Arguments &args)
{
	auto req = setRequest(args);
	if (!req)
		return std::unexpected(req.error());
	auto disk = args.require("disk");
	if (!disk)
		return std::unexpected(disk.error());
	req->disks = {*disk};
	req->progress = terminalProgress("snapshot of " + *disk);
	return runSet(*req, true);
}

Result<void> cmdCreateSnapshots(const Arguments &args)
{
	auto req = setRequest(args);
	if (!req)
		return std::unexpected(req.error());
	req->excludeDisks = args.all("exclude-disk");
	req->excludeBootVolume = args.has("exclude-boot-volume");
	req->copyTagsFromSource = args.has("copy-tags-from-source");
	req->progress = terminalProgress("snapshot set");
	return runSet(*req, false);
}

Result<void> changeTags(const Arguments &args, bool create)
{
	auto resource = args.require("resource");
	if (!resource)
		return std::unexpected(resource.error());
	if (!args.has("tag"))
		return fail(errc::kMissingParameter, "--tag is required");
	auto tags = engine::parseTags(args.all("tag"), !create);
	if (!tags)
		return std::unexpected(tags.error());
	if (!isSnapshotId(*resource) && !isVolumeId(*resource))
		return fail(errc::kInvalidParameterValue, "'" + *resource + "' is neither a snap- nor a vol- id");
	auto s = openStore();
	if (!s)
		return std::unexpected(s.error());
	VS_TRY(create ? engine::createTags(**s, *resource, *tags) : engine::deleteTags(**s, *resource, *tags));
	return {};
}

Result<void> cmdCreateTags(const Arguments &args)
{
	return changeTags(args, true);
}

Result<void> cmdDeleteTags(const Arguments &args)
{
	return changeTags(args, false);
}

Result<void> cmdRegisterInstance(const Arguments &args)
{
	auto socket = args.require("qmp-socket");
	if (!socket)
		return std::unexpected(socket.error());
	std::string hib = args.get("hibernation-enabled", "false");
	if (hib != "true" && hib != "false")
		return fail(errc::kInvalidParameterValue, "--hibernation-enabled must be true or false");
	auto s = openStore();
	if (!s)
		return std::unexpected(s.error());
	auto driver = hypervisor::QemuDriver::connect(*socket);
	if (!driver)
		return std::unexpected(driver.error());
	auto instance = (*driver)->instance();
	if (!instance)
		return std::unexpected(instance.error());
	engine::InstanceRecord r{engine::instanceIdFor(instance->key), instance->key, instance->name, hib == "true"};
	VS_TRY(engine::saveInstance(**s, r));
	Json j = Json::object();
	j.set("InstanceId", Json::string(r.instanceId));
	j.set("Name", Json::string(r.name));
	j.set("HibernationEnabled", Json::boolean(r.hibernationEnabled));
	print(ctx.output, j);
	return {};
}

Result<void> cmdDescribeSnapshots(const Arguments &args)
{
	for (const std::string &id : args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	auto s = openStore();
	if (!s)
		return std::unexpected(s.error());
	Json list = Json::array();
	if (args.has("snapshot-id")) {
		for (const std::string &id : args.all("snapshot-id")) {
			auto m = (*s)->getManifest(id);
			if (!m)
				return std::unexpected(m.error());
			list.append(snapshotJson(*m));
		}
	} else {
		auto all = (*s)->listManifests();
		if (!all)
			return std::unexpected(all.error());
		for (const store::Manifest &m : *all)
			list.append(snapshotJson(m));
	}
	Json doc = Json::object();
	doc.set("Snapshots", list);
	print(ctx.output, doc, "Snapshots",
	      {"SnapshotId", "VolumeId", "State", "Progress", "StartTime", "VolumeSize", "CaptureMode", "BytesAdded",
	       "Description"});
	return {};
}

Result<void> cmdDeleteSnapshot(const Arguments &args)
{
	auto id = args.require("snapshot-id");
	if (!id)
		return std::unexpected(id.error());
	VS_TRY(checkSnapshotId(*id));
	auto s = openStore();
	if (!s)
		return std::unexpected(s.error());
	VS_TRY(engine::deleteSnapshot(**s, *id));
	Json j = Json::object();
	j.set("SnapshotId", Json::string(*id));
	j.set("Deleted", Json::boolean(true));
	print(ctx.output, j);
	return {};
}

Result<void> cmdCreateVolume(const Arguments &args)
{
	engine::RestoreRequest req;
	auto id = args.require("snapshot-id");
	if (!id)
		return std::unexpected(id.error());
	auto target = args.require("target");
	if (!target)
		return std::unexpected(target.error());
	req.snapshotId = *id;
	req.target = *target;
	req.format = args.get("format", "qcow2");
	VS_TRY(checkSnapshotId(req.snapshotId));
	req.progress = terminalProgress("restore of " + req.snapshotId);
	auto s = openStore();
	if (!s)
		return std::unexpected(s.error());
	auto m = engine::createVolume(**s, req);
	if (!m)
		return std::unexpected(m.error());
	Json j = Json::object();
	j.set("SnapshotId", Json::string(m->snapshotId));
	j.set("VolumeId", Json::string(m->volumeId));
	j.set("Target", Json::string(req.target.string()));
	j.set("Format", Json::string(req.format));
	j.set("Size", Json::integer(int64_t(m->volumeSize)));
	print(ctx.output, j);
	return {};
}

const std::map<std::string, Command> &commands()
{
	static const std::map<std::string, Command> table = {
		{"init", {"create the store, and the key file if it is absent", {{"chunk-size"}}, cmdInit}},
		{"create-snapshot",
		 {"snapshot one disk of a running QEMU instance",
		  {{"qmp-socket"}, {"disk"}, {"qga-socket"}, {"quiesce"}, {"freeze-timeout"}, {"description"},
		   {"tag", true, true}, {"wait", false}},
		  cmdCreateSnapshot}},
		{"create-snapshots",
		 {"snapshot every disk of an instance at one point in time",
		  {{"qmp-socket"}, {"qga-socket"}, {"quiesce"}, {"freeze-timeout"}, {"exclude-boot-volume", false},
		   {"exclude-disk", true, true}, {"copy-tags-from-source", false}, {"description"},
		   {"tag", true, true}, {"wait", false}},
		  cmdCreateSnapshots}},
		{"create-tags",
		 {"add or overwrite tags of a snap- or vol- id", {{"resource"}, {"tag", true, true}}, cmdCreateTags}},
		{"delete-tags",
		 {"remove tags (KEY or KEY=VALUE) of a snap- or vol- id", {{"resource"}, {"tag", true, true}},
		  cmdDeleteTags}},
		{"register-instance",
		 {"record attributes of the instance behind a QMP socket", {{"qmp-socket"}, {"hibernation-enabled"}},
		  cmdRegisterInstance}},
		{"describe-snapshots",
		 {"list snapshots, or the ones named", {{"snapshot-id", true, true}}, cmdDescribeSnapshots}},
		{"delete-snapshot", {"delete one snapshot", {{"snapshot-id"}}, cmdDeleteSnapshot}},
		{"create-volume",
		 {"restore a snapshot into a new image file", {{"snapshot-id"}, {"target"}, {"format"}},
		  cmdCreateVolume}},
	};
	return table;
}

void usage(FILE *out)
{
	std::fprintf(out, "usage: virtsnap [--store DIR] [--key-file FILE] [--output json|table] COMMAND [options]\n\n"
			  "commands:\n");
	for (const auto &[name, c] : commands()) {
		std::string opts;
		for (const OptionSpec &o : c.options)
			opts += " [--" + o.name + (o.takesValue ? " X" : "") + "]" + (o.repeatable ? "..." : "");
		std::fprintf(out, "  %-20s %s\n  %-20s%s\n", name.c_str(), c.summary, "", opts.c_str());
	}
	std::fprintf(out, "\nThe store is --store, else $VIRTSNAP_STORE, else %s.\n"
			  "The key file is --key-file, else $VIRTSNAP_KEY_FILE, else %s.\n",
		     kDefaultStore, kDefaultKeyFile);
}

int run(int argc, char **argv)
{
	std::vector<std::string> raw(argv + 1, argv + argc);
	// First pass: find the command, so its options can be known.
	std::string name;
	for (size_t i = 0; i < raw.size(); i++) {
		if (raw[i].rfind("--", 0) == 0) {
			std::string opt = raw[i].substr(2);
			if (opt == "store" || opt == "key-file" || opt == "output")
				i++;
			continue;
		}
		name = raw[i];
		break;
	}
	auto it = commands().find(name);
	std::vector<OptionSpec> specs = kGlobalOptions;
	if (it != commands().end())
		specs.insert(specs.end(), it->second.options.begin(), it->second.options.end());
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
	if (it == commands().end()) {
		std::fprintf(stderr, "virtsnap: InvalidParameterValue: unknown command '%s' (see virtsnap --help)\n",
			     name.c_str());
		return 2;
	}
	ctx.storeDir = args->get("store", fromEnv("VIRTSNAP_STORE", kDefaultStore));
	ctx.keyFile = args->get("key-file", fromEnv("VIRTSNAP_KEY_FILE", kDefaultKeyFile));
	std::string output = args->get("output", "json");
	if (output != "json" && output != "table") {
		std::fprintf(stderr, "virtsnap: InvalidParameterValue: --output must be json or table\n");
		return 2;
	}
	ctx.output = output == "table" ? OutputFormat::Table : OutputFormat::Json;

	auto result = it->second.run(*args);
	if (!result) {
		std::fprintf(stderr, "virtsnap: %s\n", result.error().toString().c_str());
		return 1;
	}
	return 0;
}

} // namespace

} // namespace virtsnap::cli

int main(int argc, char **argv)
{
	virtsnap::installCancelHandlers();
	return virtsnap::cli::run(argc, argv);
}
