#include "requests.h"

#include <cstdlib>
#include <map>
#include <regex>

#include "commands.h"
#include "core/bytes.h"
#include "core/ids.h"
#include "crypto/crypto.h"
#include "engine/resources.h"

namespace virtsnap::daemon {

namespace {

Result<int64_t> parseInt(const std::string &option, const std::string &v, int64_t lo, int64_t hi)
{
	char *end = nullptr;
	long long n = std::strtoll(v.c_str(), &end, 10);
	if (v.empty() || *end || n < lo || n > hi)
		return fail(errc::kInvalidParameterValue, "--" + option + " '" + v + "' must be a number from " +
								  std::to_string(lo) + " to " + std::to_string(hi));
	return n;
}

// libvirt reaches a domain's agent itself; a plain QEMU's is --qga-socket.
Result<hypervisor::QuiesceMode> parseQuiesce(const Arguments &args)
{
	bool agent = args.has("qga-socket") || args.has("domain");
	std::string mode = args.get("quiesce", agent ? "try" : "off");
	if (mode == "off")
		return hypervisor::QuiesceMode::Off;
	if (mode != "try" && mode != "required")
		return fail(errc::kInvalidParameterValue, "--quiesce must be required, try or off");
	if (!agent)
		return fail(errc::kMissingParameter, "--quiesce " + mode + " needs --qga-socket");
	if (args.has("domain") && args.has("qga-socket"))
		return fail(errc::kInvalidParameterValue,
			    "--qga-socket is for --qmp-socket; libvirt reaches a domain's guest agent itself");
	return mode == "try" ? hypervisor::QuiesceMode::Try : hypervisor::QuiesceMode::Required;
}

Result<std::chrono::milliseconds> parseFreezeTimeout(const std::string &v)
{
	char *end = nullptr;
	double secs = std::strtod(v.c_str(), &end);
	if (v.empty() || *end || !(secs > 0) || secs > 3600)
		return fail(errc::kInvalidParameterValue, "--freeze-timeout '" + v + "' is not a number of seconds (0 to 3600)");
	return std::chrono::milliseconds(int64_t(secs * 1000));
}

// The options create-snapshot and create-snapshots share.
Result<engine::SnapshotSetRequest> parseSet(const Arguments &args)
{
	engine::SnapshotSetRequest req;
	req.qgaSocket = args.get("qga-socket");
	VS_ASSIGN(req.quiesce, parseQuiesce(args));
	if (args.has("freeze-timeout")) {
		VS_ASSIGN(req.freezeTimeout, parseFreezeTimeout(args.get("freeze-timeout")));
	}
	req.description = args.get("description");
	if (req.description.size() > 256)
		return fail(errc::kInvalidParameterValue, "--description is longer than 256 characters");
	req.name = args.get("name");
	static const std::regex namePattern("[a-z]([-a-z0-9]{0,61}[a-z0-9])?");
	if (args.has("name") && !std::regex_match(req.name, namePattern))
		return fail(errc::kInvalidParameterValue,
			    "--name '" + req.name + "' must match [a-z]([-a-z0-9]{0,61}[a-z0-9])?");
	VS_ASSIGN(req.tags, engine::parseTags(args.all("tag")));
	req.excludeDisks = args.all("exclude-disk");
	req.excludeBootVolume = args.has("exclude-boot-volume");
	req.copyTagsFromSource = args.has("copy-tags-from-source");
	return req;
}

// What a client token was used with: the command and its options, less
// the token itself and --wait (how the client waits changes nothing).
std::string requestHash(const Arguments &args)
{
	Arguments stripped = args;
	stripped.erase("client-token");
	stripped.erase("wait");
	std::string text = args.command() + "\n" + stripped.toJson();
	return toHex(crypto::sha256(std::span((const uint8_t *)text.data(), text.size())));
}

// --snapshot-id, required and well formed.
Result<std::string> requireSnapshotId(const Arguments &args)
{
	VS_ASSIGN(std::string id, args.require("snapshot-id"));
	VS_TRY(checkSnapshotId(id));
	return id;
}

// A block's index in a block API request (512 KiB blocks of a volume of at
// most 2^50 blocks, far past any volume EBS allows).
constexpr int64_t kMaxBlockIndex = int64_t(1) << 50;

Result<uint64_t> requireBlockIndex(const Arguments &args)
{
	VS_ASSIGN(std::string block, args.require("block-index"));
	VS_ASSIGN(int64_t index, parseInt("block-index", block, 0, kMaxBlockIndex));
	return uint64_t(index);
}

Result<void> checkSnapshotIds(const Arguments &args)
{
	for (const std::string &id : args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	return {};
}

} // namespace

Result<catalog::Filter> parseFilter(const std::string &spec)
{
	const std::string namePrefix = "Name=", valuesMark = ",Values=";
	auto at = spec.find(valuesMark);
	if (spec.rfind(namePrefix, 0) != 0 || at == std::string::npos || at <= namePrefix.size())
		return fail(errc::kInvalidParameterValue, "--filter '" + spec + "' is not Name=NAME,Values=V1,V2,...");
	catalog::Filter f;
	f.name = spec.substr(namePrefix.size(), at - namePrefix.size());
	std::string values = spec.substr(at + valuesMark.size());
	for (size_t start = 0;;) {
		size_t comma = values.find(',', start);
		f.values.push_back(values.substr(start, comma - start));
		if (comma == std::string::npos)
			break;
		start = comma + 1;
	}
	return f;
}

Result<hypervisor::Target> parseTarget(const Arguments &args, const std::string &defaultUri)
{
	hypervisor::Target t;
	t.qmpSocket = args.get("qmp-socket");
	t.domain = args.get("domain");
	if (t.qmpSocket.empty() == t.domain.empty())
		return fail(errc::kMissingParameter,
			    "name the instance with exactly one of --qmp-socket PATH or --domain NAME|UUID");
	if (args.has("connect") && !t.isLibvirt())
		return fail(errc::kInvalidParameterValue, "--connect goes with --domain");
	if (t.isLibvirt())
		t.libvirtUri = args.get("connect", defaultUri);
	return t;
}

Result<CreateRequest> parseCreate(const Arguments &args, bool oneDisk, const std::string &defaultUri)
{
	CreateRequest r;
	r.oneDisk = oneDisk;
	VS_ASSIGN(r.set, parseSet(args));
	if (oneDisk) {
		VS_ASSIGN(std::string disk, args.require("disk"));
		r.set.disks = {disk};
	}
	VS_ASSIGN(r.target, parseTarget(args, defaultUri));
	r.clientToken = args.get("client-token");
	r.requestHash = requestHash(args);
	return r;
}

Result<DescribeRequest> parseDescribe(const Arguments &args)
{
	DescribeRequest r;
	VS_TRY(checkSnapshotIds(args));
	r.snapshotIds = args.all("snapshot-id");
	for (const std::string &spec : args.all("filter")) {
		VS_ASSIGN(catalog::Filter f, parseFilter(spec));
		r.filters.push_back(std::move(f));
	}
	if (args.has("max-results")) {
		VS_ASSIGN(r.maxResults, parseInt("max-results", args.get("max-results"), 5, 1000));
	}
	r.nextToken = args.get("next-token");
	return r;
}

Result<WaitRequest> parseWait(const Arguments &args)
{
	if (!args.has("snapshot-id"))
		return fail(errc::kMissingParameter, "--snapshot-id is required");
	VS_TRY(checkSnapshotIds(args));
	WaitRequest r;
	r.snapshotIds = args.all("snapshot-id");
	if (args.has("timeout")) {
		VS_ASSIGN(int64_t secs, parseInt("timeout", args.get("timeout"), 1, 7 * 86400));
		r.timeout = std::chrono::seconds(secs);
	}
	return r;
}

Result<store::GcOptions> parseGc(const Arguments &args)
{
	store::GcOptions opts;
	if (args.has("grace-seconds")) {
		VS_ASSIGN(int64_t secs, parseInt("grace-seconds", args.get("grace-seconds"), 0, 365 * 86400));
		opts.grace = std::chrono::seconds(secs);
	}
	opts.dryRun = args.has("dry-run");
	return opts;
}

Result<engine::BlockPage> parseBlockPage(const Arguments &args)
{
	engine::BlockPage page;
	if (args.has("starting-block-index")) {
		VS_ASSIGN(int64_t start,
			  parseInt("starting-block-index", args.get("starting-block-index"), 0, kMaxBlockIndex));
		page.start = uint64_t(start);
	}
	if (args.has("max-results")) {
		VS_ASSIGN(int64_t max, parseInt("max-results", args.get("max-results"), 100, 10000));
		page.maxResults = uint32_t(max);
	}
	if (args.has("next-token")) {
		VS_ASSIGN(page.start, engine::parseBlockCursor(args.get("next-token")));
	}
	return page;
}

Result<GetBlockRequest> parseGetBlock(const Arguments &args)
{
	GetBlockRequest r;
	VS_ASSIGN(r.snapshotId, requireSnapshotId(args));
	VS_ASSIGN(r.block, requireBlockIndex(args));
	VS_ASSIGN(r.token, args.require("block-token"));
	VS_ASSIGN(r.outputFile, args.require("output-file"));
	return r;
}

namespace {

// --description and --tag, as create-snapshot takes them.
Result<void> parseAttributes(const Arguments &args, engine::StartRequest &start)
{
	start.description = args.get("description");
	if (start.description.size() > 256)
		return fail(errc::kInvalidParameterValue, "--description is longer than 256 characters");
	VS_ASSIGN(start.tags, engine::parseTags(args.all("tag")));
	return {};
}

// The one algorithm and method EBS defines: named, they must be these.
Result<void> checkChecksumKind(const Arguments &args, bool aggregate)
{
	if (args.get("checksum-algorithm", "SHA256") != "SHA256")
		return fail(errc::kInvalidParameterValue, "--checksum-algorithm must be SHA256");
	if (aggregate && args.get("checksum-aggregation-method", "LINEAR") != "LINEAR")
		return fail(errc::kInvalidParameterValue, "--checksum-aggregation-method must be LINEAR");
	if (!args.has("checksum") && (args.has("checksum-algorithm") || args.has("checksum-aggregation-method")))
		return fail(errc::kMissingParameter, "--checksum-algorithm goes with --checksum");
	return {};
}

} // namespace

Result<engine::ServeRequest> parseServe(const Arguments &args)
{
	engine::ServeRequest r;
	VS_ASSIGN(r.snapshotId, requireSnapshotId(args));
	if (args.has("nbd-socket") == args.has("port"))
		return fail(errc::kInvalidParameterValue, "give one of --nbd-socket PATH and --port N");
	if (args.has("nbd-socket")) {
		r.socket = args.get("nbd-socket");
		if (args.has("bind"))
			return fail(errc::kInvalidParameterValue, "--bind goes with --port, not --nbd-socket");
	} else {
		VS_ASSIGN(int64_t port, parseInt("port", args.get("port"), 1, 65535));
		r.port = uint16_t(port);
		r.bind = args.get("bind", "127.0.0.1");
	}
	r.writable = args.has("writable");
	return r;
}

Result<StartSnapshotRequest> parseStartSnapshot(const Arguments &args)
{
	StartSnapshotRequest r;
	VS_ASSIGN(std::string size, args.require("volume-size"));
	VS_ASSIGN(int64_t gib, parseInt("volume-size", size, 1, int64_t(engine::kMaxWriteVolumeGiB)));
	r.start.volumeSizeGiB = uint64_t(gib);
	r.start.parentSnapshotId = args.get("parent-snapshot-id");
	if (args.has("parent-snapshot-id"))
		VS_TRY(checkSnapshotId(r.start.parentSnapshotId));
	VS_TRY(parseAttributes(args, r.start));
	r.start.encrypted = args.has("encrypted") || args.has("kms-key-id");
	r.start.kmsKeyId = args.get("kms-key-id");
	if (args.has("kms-key-id") && r.start.kmsKeyId.empty())
		return fail(errc::kInvalidParameterValue, "--kms-key-id must not be empty");
	if (args.has("kms-key-id") && !args.has("encrypted"))
		return fail(errc::kInvalidParameterValue, "--kms-key-id needs --encrypted");
	if (args.has("timeout")) {
		VS_ASSIGN(int64_t minutes, parseInt("timeout", args.get("timeout"), engine::kMinWriteTimeout.count(),
						    engine::kMaxWriteTimeout.count()));
		r.start.timeout = std::chrono::minutes(minutes);
	}
	r.clientToken = args.get("client-token");
	r.requestHash = requestHash(args);
	return r;
}

Result<PutBlockRequest> parsePutBlock(const Arguments &args)
{
	PutBlockRequest r;
	VS_ASSIGN(r.snapshotId, requireSnapshotId(args));
	VS_ASSIGN(r.block, requireBlockIndex(args));
	VS_ASSIGN(r.blockData, args.require("block-data"));
	VS_ASSIGN(std::string length, args.require("data-length"));
	VS_ASSIGN(int64_t bytes, parseInt("data-length", length, 1, int64_t(1) << 31));
	if (bytes != engine::kBlockSize)
		return fail(errc::kInvalidParameterValue,
			    "--data-length " + length + " is not the block size: every block is 524288 bytes");
	r.dataLength = uint64_t(bytes);
	VS_ASSIGN(r.checksum, args.require("checksum"));
	VS_TRY(checkChecksumKind(args, false));
	return r;
}

Result<CompleteRequest> parseComplete(const Arguments &args)
{
	CompleteRequest r;
	VS_ASSIGN(r.snapshotId, requireSnapshotId(args));
	VS_ASSIGN(std::string count, args.require("changed-blocks-count"));
	VS_ASSIGN(int64_t n, parseInt("changed-blocks-count", count, 0, kMaxBlockIndex));
	r.changedBlocks = uint64_t(n);
	r.checksum = args.get("checksum");
	if (args.has("checksum") && r.checksum.empty())
		return fail(errc::kInvalidParameterValue, "--checksum is empty");
	VS_TRY(checkChecksumKind(args, true));
	return r;
}

Result<ImportImageRequest> parseImportImage(const Arguments &args)
{
	ImportImageRequest r;
	VS_ASSIGN(r.file, args.require("file"));
	r.format = args.get("format");
	if (args.has("format") && r.format != "raw" && r.format != "qcow2")
		return fail(errc::kInvalidParameterValue, "--format must be raw or qcow2");
	VS_TRY(parseAttributes(args, r.start));
	return r;
}

Result<CopySnapshotRequest> parseCopySnapshot(const Arguments &args)
{
	CopySnapshotRequest r;
	VS_ASSIGN(r.sourceSnapshotId, args.require("source-snapshot-id"));
	VS_TRY(checkSnapshotId(r.sourceSnapshotId));
	r.sourceStore = args.get("source-store");
	r.sourceKeyFile = args.get("source-key-file");
	if (args.has("source-store") != args.has("source-key-file"))
		return fail(errc::kMissingParameter, "--source-store and --source-key-file go together");
	if (args.has("source-store") && (r.sourceStore.empty() || r.sourceKeyFile.empty()))
		return fail(errc::kInvalidParameterValue, "--source-store and --source-key-file must not be empty");
	r.destinationStore = args.get("destination-store");
	if (args.has("destination-store") && r.destinationStore.empty())
		return fail(errc::kInvalidParameterValue, "--destination-store must not be empty");
	if (args.has("destination-store") && args.has("source-store"))
		return fail(errc::kInvalidParameterValue,
			    "--destination-store copies out of this store and --source-store into it: not both");
	if (args.has("destination-store") && args.has("client-token"))
		return fail(errc::kInvalidParameterValue,
			    "--client-token is not supported with --destination-store, which answers once the copy is made");
	r.description = args.get("description");
	if (r.description.size() > 256)
		return fail(errc::kInvalidParameterValue, "--description is longer than 256 characters");
	VS_ASSIGN(r.tags, engine::parseTags(args.all("tag")));
	r.encrypted = args.has("encrypted");
	r.kmsKeyId = args.get("kms-key-id");
	if (args.has("kms-key-id") && r.kmsKeyId.empty())
		return fail(errc::kInvalidParameterValue, "--kms-key-id must not be empty");
	if (args.has("kms-key-id") && args.has("destination-store"))
		return fail(errc::kInvalidParameterValue,
			    "--kms-key-id names a key of this store; a copy into --destination-store is sealed under that store's");
	r.clientToken = args.get("client-token");
	r.requestHash = requestHash(args);
	return r;
}

Result<std::vector<std::string>> parseVolumeIds(const Arguments &args)
{
	for (const std::string &id : args.all("volume-id"))
		if (!isVolumeId(id))
			return fail(errc::kInvalidParameterValue, "'" + id + "' is not a volume id (vol- and 17 hex digits)");
	return args.all("volume-id");
}

Result<Arguments> parseRequestLine(const std::string &line)
{
	if (!isValidUtf8(line))
		return fail(errc::kInvalidParameterValue, "the request is not valid UTF-8");
	auto request = Json::parse(line);
	if (!request)
		return fail(errc::kInvalidParameterValue, "the request is not JSON");
	std::string command = request->getString("command").value_or("");
	// Commands of the virtsnap command alone (init) are unknown here.
	const CommandSpec *spec = findCommand(command);
	if (!spec || spec->cliOnly)
		return fail(errc::kInvalidParameterValue, "unknown command '" + command + "'");
	return Arguments::fromJson(command, request->get("options").dump(), spec->options);
}

Result<engine::LockRequest> parseLock(const Arguments &args)
{
	engine::LockRequest r;
	VS_ASSIGN(r.snapshotId, requireSnapshotId(args));
	VS_ASSIGN(r.mode, args.require("lock-mode"));
	if (args.has("lock-duration")) {
		VS_ASSIGN(r.lockDurationDays, parseInt("lock-duration", args.get("lock-duration"), 1, 36500));
	}
	if (args.has("expiration-date")) {
		VS_ASSIGN(r.expirationDate, parseIsoTime(args.get("expiration-date"), "--expiration-date"));
	}
	if (args.has("cool-off-period")) {
		VS_ASSIGN(r.coolOffHours, parseInt("cool-off-period", args.get("cool-off-period"), 1, 72));
	}
	return r;
}

namespace {

// "Key1=V1,Key2=V2" (values without commas) as a map; InvalidParameterValue
// naming `option` for anything else.
Result<std::map<std::string, std::string>> parseShorthand(const std::string &option, const std::string &text)
{
	std::map<std::string, std::string> out;
	for (size_t start = 0; start <= text.size();) {
		size_t comma = std::min(text.find(',', start), text.size());
		std::string item = text.substr(start, comma - start);
		size_t eq = item.find('=');
		if (eq == std::string::npos || eq == 0)
			return fail(errc::kInvalidParameterValue, "--" + option + " '" + text + "' is not KEY=VALUE,...");
		out[item.substr(0, eq)] = item.substr(eq + 1);
		start = comma + 1;
	}
	return out;
}

} // namespace

Result<int64_t> parseRetentionPeriod(const std::string &text)
{
	VS_ASSIGN(auto fields, parseShorthand("retention-period", text));
	if (fields.size() != 2 || fields["RetentionPeriodUnit"] != "DAYS" || !fields.count("RetentionPeriodValue"))
		return fail(errc::kInvalidParameterValue, "--retention-period '" + text +
								  "' is not RetentionPeriodValue=N,RetentionPeriodUnit=DAYS");
	return parseInt("retention-period", fields["RetentionPeriodValue"], 1, 365);
}

Result<store::Tags> parseResourceTags(const std::vector<std::string> &specs)
{
	store::Tags tags;
	for (const std::string &spec : specs) {
		if (spec.starts_with("ResourceTagKey=")) {
			VS_ASSIGN(auto fields, parseShorthand("resource-tags", spec));
			tags.emplace_back(fields["ResourceTagKey"], fields["ResourceTagValue"]);
		} else {
			size_t eq = spec.find('=');
			tags.emplace_back(spec.substr(0, eq), eq == std::string::npos ? "" : spec.substr(eq + 1));
		}
		if (tags.back().first.empty())
			return fail(errc::kInvalidParameterValue, "--resource-tags '" + spec + "' has no key");
	}
	return tags;
}

Result<int64_t> parseUnlockDelay(const std::string &text)
{
	const std::string prefix = "UnlockDelay={", suffix = "}";
	if (!text.starts_with(prefix) || !text.ends_with(suffix))
		return fail(errc::kInvalidParameterValue,
			    "--lock-configuration '" + text +
				    "' is not UnlockDelay={UnlockDelayValue=N,UnlockDelayUnit=DAYS}");
	std::string inner = text.substr(prefix.size(), text.size() - prefix.size() - suffix.size());
	VS_ASSIGN(auto fields, parseShorthand("lock-configuration", inner));
	if (fields.size() != 2 || fields["UnlockDelayUnit"] != "DAYS" || !fields.count("UnlockDelayValue"))
		return fail(errc::kInvalidParameterValue,
			    "--lock-configuration '" + text +
				    "' is not UnlockDelay={UnlockDelayValue=N,UnlockDelayUnit=DAYS}");
	return parseInt("lock-configuration", fields["UnlockDelayValue"], 7, 30);
}

Result<std::string> parsePolicyId(const Arguments &args)
{
	VS_ASSIGN(std::string id, args.require("policy-id"));
	if (!isPolicyId(id))
		return fail(errc::kInvalidParameterValue, "--policy-id '" + id + "' is not a policy id (policy-...)");
	return id;
}

Result<PolicyDetails> parsePolicyDetailsOption(const Arguments &args, UtcTime now)
{
	VS_ASSIGN(std::string text, args.require("policy-details"));
	if (text.rfind("file://", 0) == 0)
		return fail(errc::kInvalidParameterValue,
			    "--policy-details file:// is read by the virtsnap command; over the socket send the JSON");
	auto json = isValidUtf8(text) ? Json::parse(text) : std::nullopt;
	if (!json)
		return fail(errc::kInvalidParameterValue, "--policy-details is not JSON");
	return parsePolicyDetails(*json, now);
}

Result<PolicyFilter> parsePolicyFilter(const Arguments &args)
{
	PolicyFilter filter;
	for (const std::string &id : args.all("policy-ids")) {
		if (!isPolicyId(id))
			return fail(errc::kInvalidParameterValue, "--policy-ids '" + id + "' is not a policy id (policy-...)");
		filter.policyIds.push_back(id);
	}
	if (args.has("state")) {
		filter.state = args.get("state");
		if (filter.state != "ENABLED" && filter.state != "DISABLED" && filter.state != "ERROR")
			return fail(errc::kInvalidParameterValue, "--state '" + filter.state + "' is not ENABLED, DISABLED or ERROR");
	}
	VS_ASSIGN(store::Tags tags, engine::parseTags(args.all("target-tags"), false));
	filter.targetTags.assign(tags.begin(), tags.end());
	return filter;
}

} // namespace virtsnap::daemon
