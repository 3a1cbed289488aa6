// virtsnap: the command line. Every command prints its result on stdout
// (JSON unless --output table) and any error as one line on stderr, with a
// non-zero exit: 1 for a failed request, 2 for a malformed command line.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

#include "arguments.h"
#include "core/ids.h"
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

Result<store::Tags> parseTags(const std::vector<std::string> &specs)
{
	store::Tags tags;
	for (const std::string &s : specs) {
		auto eq = s.find('=');
		if (eq == std::string::npos || eq == 0)
			return fail(errc::kInvalidParameterValue, "tag '" + s + "' is not KEY=VALUE");
		std::string key = s.substr(0, eq);
		if (key.size() > 128 || s.size() - eq - 1 > 256)
			return fail(errc::kInvalidParameterValue, "tag '" + key + "' is too long (key 128, value 256)");
		for (const auto &[k, v] : tags)
			if (k == key)
				return fail(errc::kInvalidParameterValue, "tag key '" + key + "' is given twice");
		tags.emplace_back(key, s.substr(eq + 1));
	}
	return tags;
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

Result<void> cmdCreateSnapshot(const Arguments &args)
{
	engine::SnapshotRequest req;
	auto socket = args.require("qmp-socket");
	if (!socket)
		return std::unexpected(socket.error());
	auto disk = args.require("disk");
	if (!disk)
		return std::unexpected(disk.error());
	req.qmpSocket = *socket;
	req.diskId = *disk;
	req.description = args.get("description");
	if (req.description.size() > 256)
		return fail(errc::kInvalidParameterValue, "--description is longer than 256 characters");
	auto tags = parseTags(args.all("tag"));
	if (!tags)
		return std::unexpected(tags.error());
	req.tags = *tags;
	req.progress = terminalProgress("snapshot of " + req.diskId);

	auto s = openStore();
	if (!s)
		return std::unexpected(s.error());
	auto m = engine::createSnapshot(**s, req);
	if (!m)
		return std::unexpected(m.error());
	print(ctx.output, snapshotJson(*m));
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
		  {{"qmp-socket"}, {"disk"}, {"description"}, {"tag", true, true}, {"wait", false}},
		  cmdCreateSnapshot}},
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
	return virtsnap::cli::run(argc, argv);
}
