#include "tests/support/ceph_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "json/json.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A daemon that is not up by then will not come up (they take a second or
// two here, radosgw a little more).
constexpr auto kUpTimeout = 60s;
// SIGTERM, then SIGKILL: a throwaway cluster need not shut down cleanly,
// but its logs are more useful when it does.
constexpr auto kStopGrace = 5s;
// A port found free may be taken before the daemon binds it.
constexpr int kPortAttempts = 3;

// Stops every daemon of the cluster in `$1` by the pids in its pid files
// (each checked to run with that cluster's conf, so a reused pid is left
// alone) and removes the directory, once its stdin closes: when the test
// binary is gone without having done so itself.
constexpr const char *kWatchdogScript = R"sh(
read -r _
[ -d "$1" ] || exit 0
for f in "$1"/*.pid; do
	p=$(cat "$f" 2>/dev/null) || continue
	case "$p" in ''|*[!0-9]*) continue ;; esac
	tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$1/" && kill -KILL "$p"
done
sleep 0.2
rm -rf "$1"
)sh";

// A port on 127.0.0.1 that nobody listens on now.
int freePort()
{
	int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(addr);
	int port = 0;
	if (::bind(fd, (sockaddr *)&addr, sizeof(addr)) == 0 && ::getsockname(fd, (sockaddr *)&addr, &len) == 0)
		port = ntohs(addr.sin_port);
	::close(fd);
	return port;
}

int connectLocal(int port)
{
	int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	sockaddr_in addr{};
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons(uint16_t(port));
	if (::connect(fd, (sockaddr *)&addr, sizeof(addr)) != 0) {
		::close(fd);
		return -1;
	}
	timeval tv{2, 0};
	::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

bool listening(int port)
{
	int fd = connectLocal(port);
	if (fd >= 0)
		::close(fd);
	return fd >= 0;
}

// What radosgw answers GET / with (200 once it serves S3), 0 for nothing.
int httpStatus(int port)
{
	int fd = connectLocal(port);
	if (fd < 0)
		return 0;
	static const char request[] = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	char reply[64] = {};
	int status = 0;
	if (::write(fd, request, sizeof(request) - 1) == ssize_t(sizeof(request) - 1) &&
	    ::read(fd, reply, sizeof(reply) - 1) > 12 && std::strncmp(reply, "HTTP/1.", 7) == 0)
		status = std::atoi(reply + 9);
	::close(fd);
	return status;
}

// Whether process `pid` holds the socket listening on 127.0.0.1:`port`:
// an answer on a port found free may come from another cluster's radosgw
// that bound it first. The kernel's socket table gives the listener's
// inode, and the process's descriptors show whether it has it.
bool holdsListener(pid_t pid, int port)
{
	char local[32];
	std::snprintf(local, sizeof(local), "0100007F:%04X", unsigned(port));
	std::ifstream table("/proc/net/tcp");
	std::string line, inode;
	std::getline(table, line); // the header
	while (inode.empty() && std::getline(table, line)) {
		std::istringstream fields(line);
		std::string slot, address, remote, state, skip;
		fields >> slot >> address >> remote >> state;
		if (address != local || state != "0A") // 0A: LISTEN
			continue;
		for (int i = 0; i < 5; i++) // tx:rx, tr:when, retrnsmt, uid, timeout
			fields >> skip;
		fields >> inode;
	}
	if (inode.empty())
		return false;
	std::string want = "socket:[" + inode + "]";
	std::error_code ec;
	for (const auto &entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
		std::error_code link;
		if (std::filesystem::read_symlink(entry.path(), link).string() == want)
			return true;
	}
	return false;
}

// Reaps the child if it has exited.
bool exited(pid_t pid)
{
	int status;
	return ::waitpid(pid, &status, WNOHANG) == pid;
}

std::optional<pid_t> readPid(const std::string &path)
{
	std::ifstream in(path);
	long pid = 0;
	if (in >> pid && pid > 0)
		return pid_t(pid);
	return std::nullopt;
}

std::string readTail(const std::string &path, size_t lines)
{
	std::ifstream in(path);
	std::vector<std::string> kept;
	for (std::string line; std::getline(in, line);) {
		if (line.empty())
			continue;
		kept.push_back(line);
		if (kept.size() > lines)
			kept.erase(kept.begin());
	}
	std::string out;
	for (const std::string &line : kept)
		out += "\n  " + line;
	return out;
}

std::string trimmed(std::string s)
{
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.pop_back();
	return s;
}

// Forks and execs argv with stdout and stderr appended to `out` and stdin
// from `in` (or /dev/null), holding no other descriptor of the test binary:
// a daemon must keep neither its pipes (meson waits for them to close) nor
// its locks.
pid_t spawn(const std::vector<std::string> &argv, const std::string &out, int in, bool ownSession)
{
	std::vector<char *> args;
	for (const std::string &arg : argv)
		args.push_back(const_cast<char *>(arg.c_str()));
	args.push_back(nullptr);
	int outFd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int nullFd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (outFd < 0 || nullFd < 0) {
		::close(outFd);
		::close(nullFd);
		return -1;
	}
	pid_t pid = ::fork();
	if (pid == 0) {
		if (ownSession)
			::setsid();
		::dup2(in >= 0 ? in : nullFd, 0);
		::dup2(outFd, 1);
		::dup2(outFd, 2);
		::close_range(3, ~0u, 0);
		::execvp(args[0], args.data());
		::_exit(127);
	}
	::close(outFd);
	::close(nullFd);
	return pid;
}

} // namespace

CephCluster *CephCluster::shared(std::string *why)
{
	static std::mutex mutex;
	static std::unique_ptr<CephCluster> cluster; // stopped by its destructor at exit
	static std::optional<std::string> failure;
	std::lock_guard lock(mutex);
	if (!cluster && !failure) {
		std::string reason;
		cluster = start({}, &reason);
		if (!cluster)
			failure = reason;
	}
	if (!cluster)
		*why = *failure;
	return cluster.get();
}

std::unique_ptr<CephCluster> CephCluster::start(const CephOptions &options, std::string *why)
{
	std::unique_ptr<CephCluster> cluster(new CephCluster());
	cluster->owner_ = ::getpid();
	auto started = Clock::now();
	if (!cluster->startCore(options, why))
		return nullptr; // its destructor stops what did start
	cluster->startTime_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
	std::fprintf(stderr, "ceph test cluster in %s: up in %.1f s (mon on 127.0.0.1:%d)\n",
		     cluster->dir_->path().c_str(), double(cluster->startTime_.count()) / 1000, cluster->monPort_);
	return cluster;
}

bool CephCluster::startCore(const CephOptions &options, std::string *why)
{
	for (const char *tool : {"ceph-mon", "ceph-osd", "ceph", "uuidgen"}) {
		if (!findTool(tool)) {
			*why = std::string(tool) + " is not on PATH (Debian: ceph-mon, ceph-osd, ceph-common, uuid-runtime)";
			return false;
		}
	}
	if (options.manager && !findTool("ceph-mgr")) {
		*why = "ceph-mgr is not on PATH (Debian: ceph-mgr)";
		return false;
	}
	try {
		dir_ = std::make_unique<TempDir>("vs-ceph");
	} catch (const std::exception &e) {
		*why = e.what();
		return false;
	}
	if (dir_->path().empty()) {
		*why = "no temporary directory for the cluster";
		return false;
	}
	conf_ = dir_->file("ceph.conf");
	memstoreBytes_ = options.memstoreBytes;
	if (!startWatchdog(why))
		return false;
	std::string uuid;
	if (runCommand({"uuidgen"}, &uuid) != 0) {
		*why = "uuidgen: " + uuid;
		return false;
	}
	fsid_ = trimmed(uuid);
	bool monUp = false;
	for (int attempt = 0; attempt < kPortAttempts && !monUp; attempt++) {
		monPort_ = freePort();
		monUp = writeConf(why) && startMon(why);
	}
	return monUp && startOsd(options.manager, why) && waitOsdUp(why);
}

bool CephCluster::startWatchdog(std::string *why)
{
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) != 0) {
		*why = std::string("pipe: ") + std::strerror(errno);
		return false;
	}
	// Its own session: a timeout's kill of the test's process group must
	// leave it to clean up after the test.
	watchdog_ = spawn({"/bin/sh", "-c", kWatchdogScript, "ceph-watchdog", dir_->path()}, "/dev/null", fds[0], true);
	::close(fds[0]);
	watchdogPipe_ = fds[1];
	if (watchdog_ < 0) {
		*why = "cannot start the cluster's watchdog (/bin/sh)";
		return false;
	}
	return true;
}

bool CephCluster::writeConf(std::string *why)
{
	const std::string &d = dir_->path();
	std::ofstream conf(conf_, std::ios::trunc);
	// msgr v1 only: with auth none, radosgw failed to authenticate over v2
	// (-13). Paxos commits each change at once instead of batching them
	// for a second: radosgw creates its pools one by one at start, which
	// took 9 s with the default and takes one now. The read lease: a PG
	// of a one-OSD pool whose OSD was stopped for longer than its lease
	// (0.8 x osd heartbeat grace, 16 s) stayed "laggy" once the OSD went
	// on, its reads "waiting for readable" for good, as no peer renews
	// the lease (Ceph 16.2.15); tests that pause the OSD pause it for less
	// than the 200 s it is here.
	conf << "[global]\n"
	     << "fsid = " << fsid_ << "\n"
	     << "mon host = v1:127.0.0.1:" << monPort_ << "\n"
	     << "ms bind msgr2 = false\n"
	     << "auth cluster required = none\nauth service required = none\nauth client required = none\n"
	     << "osd pool default size = 1\nosd pool default min size = 1\nosd crush chooseleaf type = 0\n"
	     << "mon allow pool size one = true\nmon warn on pool no redundancy = false\n"
	     << "osd pool default pg num = 8\nosd pool default pgp num = 8\n"
	     << "osd pool default pg autoscale mode = off\nmon max pg per osd = 1000\n"
	     << "paxos propose interval = 0.01\npaxos min wait = 0.001\n"
	     << "osd pool default read lease ratio = 10\n"
	     << "run dir = " << d << "\n"
	     << "log file = " << d << "/$name.log\n"
	     << "pid file = " << d << "/$name.pid\n"
	     << "[mon.a]\nmon data = " << d << "/mon\nmon data avail crit = 0\nmon data avail warn = 0\n"
	     // The OSD is put in the CRUSH map before it starts; left to do it
	     // itself, its first mon command sometimes went out before it had
	     // the monmap, with a zero fsid ("wrong fsid"), and it exited.
	     << "[osd.0]\nosd data = " << d << "/osd\nosd objectstore = memstore\n"
	     << "osd crush update on start = false\nosd class update on start = false\n"
	     << "public addr = 127.0.0.1\ncluster addr = 127.0.0.1\n"
	     << "memstore device bytes = " << memstoreBytes_ << "\n"
	     << "[mgr.x]\nmgr data = " << d << "/mgr\npublic addr = 127.0.0.1\n"
	     // The tools' own bound, so that a start that goes wrong fails
	     // instead of waiting 300 s for a mon.
	     << "[client]\nclient mount timeout = 30\n";
	conf.close();
	if (!conf) {
		*why = "cannot write " + conf_;
		return false;
	}
	return true;
}

bool CephCluster::startMon(std::string *why)
{
	std::error_code ec;
	std::filesystem::remove_all(dir_->file("mon"), ec); // from an attempt on a port that was taken
	std::string out;
	if (runCommand({"ceph-mon", "-c", conf_, "--id", "a", "--mkfs", "--keyring", "/dev/null"}, &out) != 0) {
		*why = "ceph-mon --mkfs: " + trimmed(out);
		return false;
	}
	std::ofstream(dir_->file("mon/keyring")).close();
	if (!spawnDaemon("mon.a", {"ceph-mon", "-c", conf_, "--id", "a", "-f"}, why))
		return false;
	pid_t pid = daemons_.back().pid;
	for (auto deadline = Clock::now() + kUpTimeout; Clock::now() < deadline;) {
		if (exited(pid)) {
			forget("mon.a");
			*why = "ceph-mon exited at start (port " + std::to_string(monPort_) + "):" + logTail("mon.a");
			return false;
		}
		if (listening(monPort_))
			return monIsOurs(why);
		std::this_thread::sleep_for(20ms);
	}
	*why = "ceph-mon did not listen on 127.0.0.1:" + std::to_string(monPort_) + " within 60 s:" + logTail("mon.a");
	return false;
}

// Whether what listens on the mon's port is this cluster's mon: another
// test binary's cluster, started at the same moment, may have found the
// same port free and bound it first (then ours exits, a little later).
// Not ours: ours is stopped, and the caller tries another port.
bool CephCluster::monIsOurs(std::string *why)
{
	auto fsid = ceph("ceph", {"fsid"}, why);
	if (fsid && fsid->find(fsid_) != std::string::npos)
		return true;
	*why = "port " + std::to_string(monPort_) + " is another cluster's mon (" + (fsid ? trimmed(*fsid) : *why) + ")";
	for (Daemon &d : daemons_)
		if (d.name == "mon.a")
			stop(d);
	forget("mon.a");
	return false;
}

bool CephCluster::startOsd(bool manager, std::string *why)
{
	std::string uuid;
	if (runCommand({"uuidgen"}, &uuid) != 0) {
		*why = "uuidgen: " + uuid;
		return false;
	}
	uuid = trimmed(uuid);
	// The OSD's own uuid given to both: "osd create" without one makes the
	// OSD's boot fail with "wrong fsid".
	if (!ceph("ceph", {"osd", "create", uuid}, why) ||
	    !ceph("ceph", {"osd", "crush", "add", "osd.0", "1", "root=default"}, why))
		return false;
	std::filesystem::create_directories(dir_->file("osd"));
	if (!ceph("ceph-osd", {"--id", "0", "--mkfs", "--osd-uuid", uuid}, why) ||
	    !spawnDaemon("osd.0", {"ceph-osd", "-c", conf_, "--id", "0", "-f"}, why))
		return false;
	if (!manager)
		return true;
	std::filesystem::create_directories(dir_->file("mgr"));
	return spawnDaemon("mgr.x", {"ceph-mgr", "-c", conf_, "--id", "x", "-f"}, why);
}

bool CephCluster::waitOsdUp(std::string *why)
{
	pid_t osd = pidOf("osd.0");
	for (auto deadline = Clock::now() + kUpTimeout; Clock::now() < deadline;) {
		if (exited(osd)) {
			forget("osd.0");
			*why = "ceph-osd exited at start:" + logTail("osd.0");
			return false;
		}
		std::string ignored;
		auto stat = ceph("ceph", {"osd", "stat"}, &ignored);
		if (stat && stat->find(" 1 up") != std::string::npos)
			return true;
		std::this_thread::sleep_for(100ms);
	}
	*why = "osd.0 was not up within 60 s:" + logTail("osd.0");
	return false;
}

bool CephCluster::spawnDaemon(const std::string &name, const std::vector<std::string> &argv, std::string *why)
{
	pid_t pid = spawn(argv, dir_->file(name + ".out"), -1, false);
	if (pid < 0) {
		*why = "cannot start " + argv[0] + ": " + std::strerror(errno);
		return false;
	}
	daemons_.push_back({name, pid});
	return true;
}

std::optional<std::string> CephCluster::ceph(const std::string &tool, std::vector<std::string> args, std::string *why)
{
	std::vector<std::string> argv{tool, "-c", conf_};
	if (tool == "ceph") {
		argv.push_back("--connect-timeout");
		argv.push_back("30");
	}
	argv.insert(argv.end(), args.begin(), args.end());
	std::string out;
	if (int status = runCommand(argv, &out); status != 0) {
		std::string command;
		for (const std::string &arg : argv)
			command += (command.empty() ? "" : " ") + arg;
		*why = command + " (status " + std::to_string(status) + "): " + trimmed(out);
		return std::nullopt;
	}
	return out;
}

std::string CephCluster::logTail(const std::string &daemon) const
{
	return readTail(dir_->file(daemon + ".out"), 5) + readTail(dir_->file(daemon + ".log"), 10);
}

bool CephCluster::createPool(const std::string &name, std::string *why)
{
	// Size 1 and 8 placement groups are the conf's defaults. Right after
	// the OSD came up, the mon once refused the command ("EPERM: problem
	// getting command descriptions from mon"), 1 start in about 40; a
	// pool that exists already is no error, so the command is retried.
	for (auto deadline = Clock::now() + 20s;;) {
		if (ceph("ceph", {"osd", "pool", "create", name, "8", "8"}, why))
			return true;
		if (Clock::now() >= deadline)
			return false;
		std::this_thread::sleep_for(500ms);
	}
}

const S3Gateway *CephCluster::gateway(std::string *why)
{
	// Started once: a gateway that failed fails every caller alike.
	std::lock_guard lock(gatewayMutex_);
	if (!gateway_ && gatewayFailure_.empty()) {
		std::string reason;
		if (!startGateway(&reason))
			gatewayFailure_ = reason.empty() ? "radosgw did not start" : reason;
	}
	if (!gateway_)
		*why = gatewayFailure_;
	return gateway_ ? &*gateway_ : nullptr;
}

bool CephCluster::startGateway(std::string *why)
{
	for (const char *tool : {"radosgw", "radosgw-admin"}) {
		if (!findTool(tool)) {
			*why = std::string(tool) + " is not on PATH (Debian: radosgw)";
			return false;
		}
	}
	S3Gateway gw;
	int port = 0;
	for (int attempt = 0; attempt < kPortAttempts && !port; attempt++)
		port = startRadosgw(why);
	if (port <= 0 || !createUser(&gw, why))
		return false;
	gw.endpoint = "http://127.0.0.1:" + std::to_string(port);
	gateway_ = gw;
	return true;
}

int CephCluster::startRadosgw(std::string *why)
{
	int port = freePort();
	// tcp_nodelay: without it beast's small writes wait for the client's
	// delayed ACK, and every request on a kept-alive connection (libcurl
	// reuses them) took 40 ms more: 25 pack indexes read at open, 1 s.
	std::string frontend = "beast endpoint=127.0.0.1:" + std::to_string(port) + " tcp_nodelay=1";
	std::vector<std::string> argv{"radosgw", "-c", conf_, "-n", "client.rgw.r", "-f", "--rgw-frontends", frontend};
	if (!spawnDaemon("client.rgw.r", argv, why))
		return 0;
	// radosgw in the foreground writes no pid file; the others do.
	pid_t pid = daemons_.back().pid;
	std::ofstream(dir_->file("client.rgw.r.pid")) << pid << "\n";
	for (auto deadline = Clock::now() + kUpTimeout; Clock::now() < deadline;) {
		if (exited(pid)) {
			forget("client.rgw.r");
			*why = "radosgw exited at start (port " + std::to_string(port) + "):" + logTail("client.rgw.r");
			return 0;
		}
		if (httpStatus(port) == 200) {
			if (holdsListener(pid, port))
				return port;
			// Another cluster's radosgw took the port first: ours
			// cannot bind it, and the caller tries another.
			*why = "port " + std::to_string(port) + " is another radosgw's";
			for (Daemon &d : daemons_)
				if (d.name == "client.rgw.r")
					stop(d);
			forget("client.rgw.r");
			return 0;
		}
		std::this_thread::sleep_for(50ms);
	}
	// Not another port: a radosgw that neither answers nor exits will not
	// do better elsewhere. It is stopped with the rest.
	*why = "radosgw did not answer on port " + std::to_string(port) + " within 60 s:" + logTail("client.rgw.r");
	return -1;
}

bool CephCluster::createUser(S3Gateway *gw, std::string *why)
{
	// radosgw-admin makes up the keys (so they are in no argv) and prints
	// them as JSON on stdout; its log lines go elsewhere.
	std::string out;
	std::string errors = dir_->file("radosgw-admin.out");
	int status = runCommand({"/bin/sh", "-c", "exec \"$@\" 2>>" + errors, "radosgw-admin", "radosgw-admin", "-c",
				 conf_, "user", "create", "--uid", "virtsnap-test", "--display-name", "virtsnap tests"},
				&out);
	auto json = status == 0 ? Json::parse(out) : std::nullopt;
	Json key = json ? json->get("keys").at(0) : Json();
	gw->accessKey = key.getString("access_key").value_or("");
	gw->secretKey = key.getString("secret_key").value_or("");
	if (gw->accessKey.empty() || gw->secretKey.empty()) {
		*why = "radosgw-admin user create (status " + std::to_string(status) + "): " + trimmed(out) +
		       readTail(errors, 5);
		return false;
	}
	gw->credentialsFile = dir_->file("s3-credentials");
	// 0600 whatever the umask, as a file of keys should be.
	int fd = ::open(gw->credentialsFile.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	std::string text = "access-key-id = " + gw->accessKey + "\nsecret-access-key = " + gw->secretKey + "\n";
	bool written = fd >= 0 && ::fchmod(fd, 0600) == 0 &&
		       ::write(fd, text.data(), text.size()) == ssize_t(text.size());
	if (fd >= 0)
		::close(fd);
	if (!written) {
		*why = "cannot write " + gw->credentialsFile + ": " + std::strerror(errno);
		return false;
	}
	return true;
}

pid_t CephCluster::pidOf(const std::string &daemon) const
{
	for (const Daemon &d : daemons_)
		if (d.name == daemon)
			return d.pid;
	return -1;
}

void CephCluster::forget(const std::string &daemon)
{
	std::erase_if(daemons_, [&](const Daemon &d) { return d.name == daemon; });
}

bool CephCluster::kill(const std::string &daemon, std::string *why)
{
	for (Daemon &d : daemons_) {
		if (d.name != daemon || d.pid <= 0)
			continue;
		::kill(d.pid, SIGKILL);
		::waitpid(d.pid, nullptr, 0);
		d.pid = -1;
		return true;
	}
	*why = "no daemon " + daemon + " runs in " + dir_->path();
	return false;
}

bool CephCluster::signal(const std::string &daemon, int signal, std::string *why)
{
	pid_t pid = pidOf(daemon);
	if (pid <= 0) {
		*why = "no daemon " + daemon + " runs in " + dir_->path();
		return false;
	}
	if (::kill(pid, signal) != 0) {
		*why = "cannot signal " + daemon + " (pid " + std::to_string(pid) + "): " + std::strerror(errno);
		return false;
	}
	return true;
}

bool CephCluster::pause(const std::string &daemon, std::string *why)
{
	return signal(daemon, SIGSTOP, why);
}

bool CephCluster::resume(const std::string &daemon, std::string *why)
{
	return signal(daemon, SIGCONT, why);
}

void CephCluster::stop(Daemon &daemon)
{
	if (daemon.pid <= 0)
		return;
	// By its pid file, as long as that names the child we started (the
	// daemons run in the foreground, so it does once they have written it);
	// else by the child's pid: never a process that is not ours.
	auto filed = readPid(dir_->file(daemon.name + ".pid"));
	pid_t pid = filed && *filed == daemon.pid ? *filed : daemon.pid;
	::kill(pid, SIGTERM);
	::kill(pid, SIGCONT); // a paused daemon would sit on the SIGTERM until the grace ran out
	for (auto deadline = Clock::now() + kStopGrace; Clock::now() < deadline;) {
		if (exited(pid)) {
			daemon.pid = -1;
			return;
		}
		std::this_thread::sleep_for(10ms);
	}
	::kill(pid, SIGKILL);
	::waitpid(pid, nullptr, 0);
	daemon.pid = -1;
}

void CephCluster::stopAll()
{
	if (::getpid() != owner_) {
		// A forked child of a test that exits through exit(): the cluster
		// and its directory are its parent's.
		(void)dir_.release();
		return;
	}
	for (auto it = daemons_.rbegin(); it != daemons_.rend(); ++it)
		stop(*it);
	daemons_.clear();
	dir_.reset();
	if (watchdogPipe_ >= 0)
		::close(watchdogPipe_); // the watchdog finds no directory and exits
	if (watchdog_ > 0)
		::waitpid(watchdog_, nullptr, 0);
	watchdogPipe_ = watchdog_ = -1;
}

CephCluster::~CephCluster()
{
	stopAll();
}

} // namespace virtsnap::test
