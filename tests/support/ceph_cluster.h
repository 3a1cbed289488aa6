// A throwaway single-node Ceph cluster for the RADOS and S3 backends' tests:
// one mon, one memstore OSD, a mgr and (on demand) radosgw, without cephx,
// on 127.0.0.1, in a temporary directory (under $TMPDIR), on ports free when
// it starts, so several test binaries and worktrees can each run their own.
//
// The daemons run in the foreground as children of the test binary and are
// stopped by the pids in their pid files; a watchdog process stops them and
// removes the directory if the binary dies without doing so (a crash, a
// SIGKILL at a timeout). Nothing is ever stopped by name.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace virtsnap::test {

class TempDir;

// radosgw on the cluster, with an S3 user of its own.
struct S3Gateway {
	std::string endpoint; // "http://127.0.0.1:PORT"
	std::string accessKey, secretKey;
	// 0600, two lines: "access-key-id = AK" and "secret-access-key = SK".
	std::string credentialsFile;
};

struct CephOptions {
	// The mgr serves nothing the store needs; a cluster without one starts
	// the same and costs a core less for a few seconds.
	bool manager = true;
	// What the memstore OSD may hold before radosgw answers 507. Memory is
	// taken as objects fill it, not at start; the tests' packs in several
	// namespaces at once fit in the default, a benchmark's disks may not.
	unsigned long long memstoreBytes = 3ULL << 30;
};

class CephCluster
{
public:
	// The cluster this test binary shares: the first caller starts it, it
	// stops when the binary exits. Null with the reason in *why (a tool
	// that is missing, a daemon that did not come up), every call alike.
	static CephCluster *shared(std::string *why);
	// A cluster of the caller's own (for tests that stop a daemon of it),
	// stopped when destroyed. Null with the reason in *why.
	static std::unique_ptr<CephCluster> start(const CephOptions &options, std::string *why);

	// Stops every daemon by its pid file and removes the directory.
	~CephCluster();
	CephCluster(const CephCluster &) = delete;
	CephCluster &operator=(const CephCluster &) = delete;

	// The ceph.conf every client uses (librados' rados_conf_read_file, the
	// ceph tools' -c); any client id works, there is no cephx.
	const std::string &confPath() const { return conf_; }
	// 127.0.0.1's port of the mon, msgr v1.
	int monPort() const { return monPort_; }
	// How long start took until the OSD was up (radosgw not included).
	std::chrono::milliseconds startTime() const { return startTime_; }

	// A replicated pool of size 1 with 8 placement groups; true when it was
	// created or is there already.
	bool createPool(const std::string &name, std::string *why);

	// radosgw and its user: the first caller starts it (about a second
	// more). Null with the reason in *why.
	const S3Gateway *gateway(std::string *why);

	// Stops one daemon ("mon.a", "osd.0", "mgr.x", "client.rgw.r") with
	// SIGKILL, as a crash would: for tests of a cluster that is down.
	bool kill(const std::string &daemon, std::string *why);
	// SIGSTOP and SIGCONT to one daemon: it holds its connections and
	// answers nothing, as a hung disk or host would, until resumed.
	bool pause(const std::string &daemon, std::string *why);
	bool resume(const std::string &daemon, std::string *why);

private:
	struct Daemon {
		std::string name; // "mon.a", as in its pid file's name
		pid_t pid = -1;   // the child we started (it writes the pid file)
	};

	CephCluster() = default;
	bool startCore(const CephOptions &options, std::string *why);
	bool startWatchdog(std::string *why);
	bool writeConf(std::string *why);
	bool startMon(std::string *why);
	bool monIsOurs(std::string *why);
	bool startOsd(bool manager, std::string *why);
	bool waitOsdUp(std::string *why);
	bool startGateway(std::string *why);
	// The port radosgw serves S3 on; 0 when it exited (the port may have
	// been taken: another may do), -1 when it did not answer.
	int startRadosgw(std::string *why);
	bool createUser(S3Gateway *gw, std::string *why);
	bool spawnDaemon(const std::string &name, const std::vector<std::string> &argv, std::string *why);
	// Output of the ceph tool with this cluster's conf, or nullopt with
	// the command and its output in *why.
	std::optional<std::string> ceph(const std::string &tool, std::vector<std::string> args, std::string *why);
	std::string logTail(const std::string &daemon) const;
	pid_t pidOf(const std::string &daemon) const; // -1 when not running
	// Drops a daemon that exited and was reaped: its pid is no longer ours.
	void forget(const std::string &daemon);
	bool signal(const std::string &daemon, int signal, std::string *why);
	void stop(Daemon &daemon);
	void stopAll();

	std::unique_ptr<TempDir> dir_;
	std::string conf_;
	std::string fsid_;
	int monPort_ = 0;
	unsigned long long memstoreBytes_ = 0;
	std::vector<Daemon> daemons_;
	pid_t owner_ = -1;     // the process that started the cluster (forked children do not stop it)
	pid_t watchdog_ = -1;
	int watchdogPipe_ = -1; // its stdin: it acts when this closes
	std::chrono::milliseconds startTime_{0};

	std::mutex gatewayMutex_;
	std::optional<S3Gateway> gateway_;
	std::string gatewayFailure_;
};

} // namespace virtsnap::test
