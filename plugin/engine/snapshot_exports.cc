#include "snapshot_exports.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "core/file_util.h"
#include "core/process.h"
#include "crypto/resource_ids.h"

#ifndef VIRTSNAP_NBDKIT_PLUGIN
#define VIRTSNAP_NBDKIT_PLUGIN "/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-virtsnap-plugin.so"
#endif

namespace virtsnap::engine {

namespace fs = std::filesystem;
using store::ExportRecord;

namespace {

// Which host serves an export, as hosts sharing a store tell each other's
// apart: its name, which clones and defaults ("localhost") share, and the
// start of its machine id (machine-id(5)), which they do not.
std::string thisHost()
{
	char name[256] = {};
	::gethostname(name, sizeof(name) - 1);
	std::string host = name;
	std::ifstream file("/etc/machine-id");
	std::string id;
	if (file >> id && id.size() >= 12)
		host += "/" + id.substr(0, 12);
	return host;
}

bool isExportId(const std::string &id)
{
	if (id.size() != 4 + 17 || !id.starts_with("exp-"))
		return false;
	return id.find_first_not_of("0123456789abcdef", 4) == std::string::npos;
}

// Whether `pid` is, still, the nbdkit serving `exportId` (not a process
// that took its pid since, nor a zombie).
bool isOurNbdkit(int64_t pid, const std::string &exportId)
{
	if (pid <= 0)
		return false;
	std::string proc = "/proc/" + std::to_string(pid);
	std::ifstream stat(proc + "/stat");
	std::string line;
	std::getline(stat, line);
	auto close = line.rfind(')');
	if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z')
		return false;
	std::ifstream cmdline(proc + "/cmdline");
	std::vector<std::string> argv;
	for (std::string arg; std::getline(cmdline, arg, '\0');)
		argv.push_back(arg);
	if (argv.empty() || fs::path(argv[0]).filename() != "nbdkit")
		return false;
	return std::find(argv.begin(), argv.end(), "export=" + exportId) != argv.end();
}

// The socket nbdkit listened on, if it is still there: a dead server's
// would refuse the next export's bind.
void removeSocket(const std::string &socket)
{
	struct stat st {};
	if (!socket.empty() && ::lstat(socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
		::unlink(socket.c_str());
}

// What a local export leaves: its record, its folder (pid file, log, the
// cow filter's overlay) and its socket.
Result<void> removeLocalExport(store::Store &store, const ExportRecord &r)
{
	removeSocket(r.socket);
	std::error_code ec;
	if (!r.overlayDir.empty())
		fs::remove_all(r.overlayDir, ec);
	return store.removeRecord(store::kSnapshotExportRecords, r.exportId);
}

Result<ExportRecord> getExport(store::Store &store, const std::string &exportId)
{
	if (!isExportId(exportId))
		return fail(errc::kInvalidParameterValue, "'" + exportId + "' is not an export id (exp-...)");
	VS_ASSIGN(auto json, store::getJsonRecord(store, store::kSnapshotExportRecords, exportId));
	if (!json)
		return fail(errc::kResourceNotFound, "export " + exportId + " does not exist");
	return store::parseExportRecord(*json, "export " + exportId);
}

// Sends `signal` and waits up to `grace` for the process to go.
bool signalAndWait(int64_t pid, const std::string &exportId, int signal, std::chrono::milliseconds grace)
{
	::kill(pid_t(pid), signal);
	auto deadline = std::chrono::steady_clock::now() + grace;
	while (isOurNbdkit(pid, exportId)) {
		if (std::chrono::steady_clock::now() > deadline)
			return false;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
	return true;
}

std::vector<std::string> nbdkitArgv(const ServeRequest &req, const ExportRecord &r, const fs::path &dir)
{
	std::vector<std::string> argv = {"nbdkit", "--pidfile", (dir / "nbdkit.pid").string(), "--log=stderr"};
	if (req.writable)
		argv.push_back("--filter=cow"); // its overlay: an unlinked file in $TMPDIR, the export's folder
	else
		argv.push_back("--readonly");
	if (req.port) {
		argv.insert(argv.end(), {"--port", std::to_string(*req.port), "--ipaddr", req.bind});
	} else {
		argv.insert(argv.end(), {"--unix", req.socket.string()});
	}
	argv.insert(argv.end(), {nbdkitPluginPath(), "store=" + req.storeUrl, "key-file=" + req.keyFile.string(),
				 "snapshot=" + req.snapshotId, "export=" + r.exportId,
				 "timeout=" + std::to_string(req.timeout.count())});
	if (!req.s3CredentialsFile.empty())
		argv.push_back("s3-credentials=" + req.s3CredentialsFile.string());
	if (!req.statsFile.empty())
		argv.push_back("stats-file=" + req.statsFile.string());
	return argv;
}

// Why nbdkit did not start, in one line of ours.
Error startFailure(const ServeRequest &req, const fs::path &log)
{
	auto text = readFile(log);
	std::string why = text ? lastLine(std::string(text->begin(), text->end())) : "";
	if (req.port && why.find("Address already in use") != std::string::npos)
		return {errc::kInvalidParameterValue,
			"port " + std::to_string(*req.port) + " on " + req.bind + " is in use"};
	if (why.empty())
		why = "it exited without saying why";
	return {errc::kIo, "nbdkit did not start: " + why};
}

// nbdkit writes its pid file once it has forked into the background and
// listens.
Result<int64_t> waitForPidFile(const fs::path &pidFile)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	for (;;) {
		std::ifstream in(pidFile);
		int64_t pid = 0;
		if (in >> pid && pid > 0)
			return pid;
		if (std::chrono::steady_clock::now() > deadline)
			return fail(errc::kIo, "nbdkit wrote no pid file in 10 s");
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
}

Result<int64_t> startNbdkit(const ServeRequest &req, const ExportRecord &r, const fs::path &dir)
{
	SpawnOptions opts;
	opts.err = Stdio::toFile(dir / "nbdkit.log");
	opts.out = Stdio::null();
	opts.extraEnv = {"TMPDIR=" + dir.string()};
	opts.defaultSignals = true;
	opts.closeOtherFds = true; // it outlives us: none of our descriptors with it
	auto spawned = Process::spawn(nbdkitArgv(req, r, dir), opts);
	if (!spawned)
		return fail(errc::kIo, "cannot run nbdkit (is the nbdkit package installed?): " + spawned.error().message);
	// It forks into the background once it listens; the parent then exits.
	int status = spawned->wait();
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return std::unexpected(startFailure(req, dir / "nbdkit.log"));
	// Its background half may still fail (in the plugin's after_fork).
	auto pid = waitForPidFile(dir / "nbdkit.pid");
	if (!pid || !isOurNbdkit(*pid, r.exportId))
		return std::unexpected(startFailure(req, dir / "nbdkit.log"));
	return pid;
}

Result<void> checkServeRequest(const ServeRequest &req)
{
	if (req.port.has_value() == !req.socket.empty())
		return fail(errc::kInvalidParameterValue, "give one of --nbd-socket and --port");
	if (!req.socket.empty()) {
		if (!req.socket.is_absolute())
			return fail(errc::kInvalidParameterValue, "--nbd-socket must be an absolute path");
		std::error_code ec;
		if (fs::symlink_status(req.socket, ec).type() != fs::file_type::not_found)
			return fail(errc::kTargetExists, "socket path " + req.socket.string() + " is taken");
		if (!fs::is_directory(req.socket.parent_path(), ec))
			return fail(errc::kInvalidParameterValue,
				    "the socket's directory " + req.socket.parent_path().string() + " does not exist");
	}
	if (!fs::exists(nbdkitPluginPath()))
		return fail(errc::kIo, "virtsnap's nbdkit plugin " + nbdkitPluginPath() + " is missing");
	return {};
}

std::string uriOf(const ServeRequest &req)
{
	if (req.port)
		return "nbd://" + req.bind + ":" + std::to_string(*req.port) + "/";
	return "nbd+unix:///?socket=" + req.socket.string();
}

} // namespace

std::string nbdkitPluginPath()
{
	if (const char *path = ::getenv("VIRTSNAP_NBDKIT_PLUGIN"); path && *path)
		return path;
	return VIRTSNAP_NBDKIT_PLUGIN;
}

Result<ExportRecord> serveSnapshot(store::Store &store, const ServeRequest &req)
{
	VS_TRY(checkServeRequest(req));
	VS_ASSIGN(store::Manifest m, store.getManifest(req.snapshotId));
	ExportRecord r;
	VS_ASSIGN(r.exportId, newResourceId("exp-"));
	VS_TRY(makeDirs(req.exportsDir, 0700));
	fs::path dir = req.exportsDir / r.exportId;
	VS_TRY(makeDirs(dir, 0700));
	r.snapshotId = req.snapshotId;
	r.host = thisHost();
	r.socket = req.socket.string();
	r.port = req.port.value_or(0);
	r.bind = req.port ? req.bind : "";
	r.uri = uriOf(req);
	r.writable = req.writable;
	r.overlayDir = dir.string();
	VS_ASSIGN(r.startTime, store::storeTime(store));
	r.heldUntil = r.startTime + store::kExportHoldSeconds;
	r.manifest = std::move(m);
	// The record first: from the moment nbdkit reads, gc and deletion on
	// every host know the snapshot is served.
	VS_TRY(store::putExportRecord(store, r));
	auto pid = startNbdkit(req, r, dir);
	if (!pid) {
		(void)removeLocalExport(store, r); // nothing served; what is left, gc removes once expired
		return std::unexpected(pid.error());
	}
	r.pid = *pid;
	if (auto put = store::putExportRecord(store, r); !put) {
		signalAndWait(r.pid, r.exportId, SIGKILL, std::chrono::seconds(2));
		(void)removeLocalExport(store, r); // as above
		return std::unexpected(put.error());
	}
	return r;
}

Result<std::vector<ExportStatus>> describeExports(store::Store &store, const std::vector<std::string> &exportIds)
{
	std::vector<ExportRecord> records;
	if (exportIds.empty()) {
		VS_ASSIGN(records, store::listExportRecords(store));
	} else {
		for (const std::string &id : exportIds) {
			VS_ASSIGN(ExportRecord r, getExport(store, id));
			records.push_back(std::move(r));
		}
	}
	VS_ASSIGN(int64_t now, store::storeTime(store));
	const std::string host = thisHost();
	std::vector<ExportStatus> out;
	for (ExportRecord &r : records) {
		std::string state = r.heldUntil > now ? "active" : "expired";
		// pid 0: serve-snapshot is starting it right now.
		if (r.host == host && r.pid != 0 && !isOurNbdkit(r.pid, r.exportId)) {
			VS_TRY(removeLocalExport(store, r));
			state = "gone";
		}
		out.push_back({std::move(r), state});
	}
	return out;
}

Result<ExportRecord> stopServing(store::Store &store, const std::string &exportId)
{
	VS_ASSIGN(ExportRecord r, getExport(store, exportId));
	if (r.host != thisHost()) {
		VS_ASSIGN(int64_t now, store::storeTime(store));
		if (r.heldUntil > now)
			return fail(errc::kIncorrectState, "export " + exportId + " is served by host " + r.host +
								   ": stop it there");
		VS_TRY(store.removeRecord(store::kSnapshotExportRecords, exportId));
		return r;
	}
	// TERM lets nbdkit finish its requests and close its socket.
	if (isOurNbdkit(r.pid, exportId) &&
	    !signalAndWait(r.pid, exportId, SIGTERM, std::chrono::seconds(5)) &&
	    !signalAndWait(r.pid, exportId, SIGKILL, std::chrono::seconds(5)))
		return fail(errc::kIo, "nbdkit (pid " + std::to_string(r.pid) + ") of export " + exportId +
					       " does not stop");
	VS_TRY(removeLocalExport(store, r));
	return r;
}

Result<void> checkNotServed(store::Store &store, const std::string &snapshotId)
{
	VS_ASSIGN(int64_t now, store::storeTime(store));
	VS_ASSIGN(auto live, store::liveExportsOf(store, snapshotId, now));
	const std::string host = thisHost();
	for (const ExportRecord &r : live) {
		if (r.host == host && r.pid != 0 && !isOurNbdkit(r.pid, r.exportId)) {
			VS_TRY(removeLocalExport(store, r)); // its nbdkit died: it serves nothing
			continue;
		}
		return fail(errc::kSnapshotInUse, "snapshot " + snapshotId + " is served over NBD (export " +
							  r.exportId + " on " + r.host + "): stop-serving it first");
	}
	return {};
}

Result<void> restoreServedManifest(store::Store &store, const std::string &snapshotId)
{
	VS_ASSIGN(int64_t now, store::storeTime(store));
	VS_ASSIGN(auto live, store::liveExportsOf(store, snapshotId, now));
	if (live.empty())
		return {};
	return store.putManifest(live.front().manifest, /*overwrite=*/true);
}

} // namespace virtsnap::engine
