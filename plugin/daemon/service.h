// Every command as a function from parsed options to the JSON the CLI
// prints, over one store, its catalog, and (in the daemon) a job runner.
// The daemon serves it on its socket; the CLI runs it in-process when no
// daemon answers. Creates answer "pending" once the point in time is
// fixed; in the daemon the data then moves on a job thread, in-process it
// moves before the answer (--wait).
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "catalog/catalog.h"
#include "core/arguments.h"
#include "engine/resources.h"
#include "engine/snapshot_engine.h"
#include "events/dispatcher.h"
#include "hypervisor/target.h"
#include "json/json.h"
#include "store/store.h"

namespace virtsnap::daemon {

struct ServiceOptions {
	bool background = false;      // jobs on threads (the daemon), or inline
	unsigned maxParallelJobs = 2; // transfers at once; more wait, pending
	std::string libvirtUri = "qemu:///system"; // --connect's default
};

// What a command prints, and whether it failed anyway (a set in error
// prints its snapshots and exits 1).
struct Reply {
	virtsnap::Json doc;
	std::optional<Error> failure;
};

class Service
{
public:
	// Opens the store and its catalog (rebuilt from the manifests when
	// empty). `events` may be null: nothing is emitted.
	static Result<std::unique_ptr<Service>> open(const std::filesystem::path &storeDir,
						     const std::filesystem::path &keyFile, ServiceOptions options,
						     events::Dispatcher *events);
	// Interrupts running jobs (they end in error) and waits for them.
	~Service();

	// Runs one command on behalf of `ownerId` (a uid, as text).
	Result<Reply> run(const Arguments &args, const std::string &ownerId,
			  const engine::ProgressFn &progress = nullptr);

	// Jobs a killed process (daemon or CLI) left "running" end in error,
	// and what their captures left in QEMU is removed. The daemon runs it
	// at start, the CLI before an in-process snapshot.
	void recoverInterruptedJobs();

	size_t runningJobs() const;

private:
	Service(ServiceOptions options, events::Dispatcher *events) : options_(options), events_(events) {}

	Result<Reply> createSnapshots(const Arguments &args, bool single, const std::string &ownerId,
				      const engine::ProgressFn &progress);
	Result<Reply> describeSnapshots(const Arguments &args);
	Result<Reply> deleteSnapshot(const Arguments &args);
	Result<Reply> createVolume(const Arguments &args, const engine::ProgressFn &progress);
	Result<Reply> changeTags(const Arguments &args, bool create);
	Result<Reply> registerInstance(const Arguments &args);
	Result<Reply> describeVolumes(const Arguments &args);
	Result<Reply> modifyVolume(const Arguments &args);
	Result<Reply> verify(const Arguments &args);
	Result<Reply> gc(const Arguments &args);
	Result<Reply> rebuildCatalog();
	Result<Reply> waitCompleted(const Arguments &args);
	Result<Reply> restoreInstance(const Arguments &args, const engine::ProgressFn &progress);
	Result<Reply> libvirtHook(const Arguments &args);
	// Redefines what libvirt lost of a domain's checkpoints, off the
	// hook's thread (a hook must not wait for libvirt).
	void reconcileLater(const std::string &uuid);

	// Runs a begun job to its end: catalog rows, deferred deletes, events.
	void finishJob(const std::string &jobId, engine::SnapshotJob &job, bool single,
		       const engine::ProgressFn &progress, std::shared_ptr<std::atomic<bool>> cancel);
	// --qmp-socket or --domain [--connect]: exactly one instance.
	Result<hypervisor::Target> targetOf(const Arguments &args) const;
	// The daemon's shared driver of that instance (in-process: a new one).
	Result<std::shared_ptr<hypervisor::Driver>> driverFor(const hypervisor::Target &target);
	// Callers hold admissionMutex_.
	bool claimCapture(const std::vector<std::string> &volumes);
	void unadmitLocked(const std::vector<std::string> &volumes);
	void emitFailure(const engine::SnapshotSetRequest &req, const std::vector<std::string> &ids, bool single,
			 const std::string &why);
	// `instanceKey`: what the job snapshots, so a stop of that instance
	// can cancel it.
	std::shared_ptr<std::atomic<bool>> registerJob(const std::string &jobId, const std::string &instanceKey = "");
	std::string cancelReason(const std::string &jobId) const;
	void unregisterJob(const std::string &jobId);
	Result<Reply> replyFor(const std::vector<std::string> &ids, bool single);
	Result<std::string> recordJob(engine::SnapshotJob &job, const engine::SnapshotSetRequest &req, bool single,
				      const std::string &token, const std::string &hash, const std::string &jobId = "");
	Result<Reply> queueSnapshots(engine::SnapshotSetRequest req, const std::vector<hypervisor::DiskInfo> &disks,
				     const hypervisor::InstanceInfo &instance, const std::vector<std::string> &volumes,
				     const std::vector<std::string> &claims, bool single, const std::string &token, const std::string &hash,
				     std::function<void(bool)> release);
	Result<void> syncVolume(const engine::VolumeRecord &v, const std::string &target = "");

	ServiceOptions options_;
	events::Dispatcher *events_;
	std::unique_ptr<store::Store> store_;
	std::unique_ptr<catalog::Catalog> catalog_;

	// Admission: pending snapshots per volume, counted before their rows
	// exist, so two creates cannot both pass the limit.
	std::mutex admissionMutex_;
	std::map<std::string, int> admitted_;
	// Volumes whose capture (fleecing) is alive; QEMU allows one per disk,
	// libvirt one per domain (then the instance key is claimed too).
	std::set<std::string> capturing_;
	std::condition_variable captureFreed_;
	// gc sweeps chunks a snapshot begun earlier may rely on (its parent's):
	// no capture may be alive while it runs, and none starts.
	bool gcActive_ = false;
	// Instances whose disks restore-instance is writing.
	std::set<std::string> restoring_;

	// One driver (monitor connection, NBD server) per instance.
	std::mutex driversMutex_;
	std::map<std::string, std::weak_ptr<hypervisor::Driver>> drivers_;

	mutable std::mutex jobsMutex_;
	std::condition_variable jobsDone_;
	std::map<std::string, std::shared_ptr<std::atomic<bool>>> jobs_; // running: cancel flags
	std::map<std::string, std::string> jobInstances_;                // job -> instance key
	std::map<std::string, std::string> cancelReasons_;               // job -> StateMessage
	std::condition_variable slotFree_;
	unsigned transfersRunning_ = 0;
};

} // namespace virtsnap::daemon
