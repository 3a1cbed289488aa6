// One instant restore (create-volume --instant, complete-instant-restore)
// from its image's creation until it stands alone. Its job row (kind
// "instant-restore") holds the state below as its details, written before
// the copy starts, so that describe-instant-restores and a later
// complete-instant-restore find it whatever happened since. The copy is
// watched on a job thread (virtsnapd) or here (in process: the command
// waits); at its end the export stops, the row says available, and an
// "EBS Volume Notification" goes out. A failed copy keeps the export: the
// image stays usable, and complete-instant-restore starts the copy again.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "context.h"
#include "hypervisor/capture.h"
#include "job_runner.h"

namespace virtsnap::daemon {

inline constexpr const char *kInstantKind = "instant-restore";

struct InstantState {
	std::string jobId, snapshotId, volumeId, target, exportId, uri, statsFile;
	uint64_t size = 0;
	std::string ownerId;  // the account that asked; only it (or root) sees and completes it
	std::string instance; // hypervisor::Target::key() of who copies; "" none yet
	std::string disk;     // its disk id or node name
	uint64_t speed = 0;   // bytes/s, 0 unlimited
	std::string startTime; // ISO 8601
	int64_t startMs = 0;  // unix ms of the request
	int64_t readyMillis = 0;
	int64_t copiedMillis = -1;
	uint64_t bytesServed = 0, bytesFromStore = 0;
	// "initializing" (usable; its data still comes partly from the
	// export), "available" (stands alone), "error" (the copy failed).
	std::string state = "initializing";
	std::string stateMessage;

	Json toJson() const;
	static InstantState fromJson(const Json &j);
};

int64_t unixMillisNow();

// The instant restore of `target` (a running, failed or interrupted one
// first), from the catalog's job rows.
Result<std::optional<InstantState>> findInstantRestore(Context &ctx, const std::string &target);
// Writes the state into its job row.
Result<void> saveInstantState(Context &ctx, const InstantState &s);

// At virtsnapd's start: the instant restores whose watcher stopped with
// the last virtsnapd are watched again. Their copies ran on in the
// hypervisor meanwhile: one that ended is finished (its export stopped),
// one that runs is followed, one that never started or failed is started
// again (what was copied stays), one at a time per instance as always.
void resumeInstantRestores(Context &ctx);

// Watches the copies of one instance's disks one after the other: QEMU
// 7.2 crashes when its block-node query (which libvirt sends as it ends a
// job) comes while another stream job has ended and is not yet
// dismissed, so at most one copy runs at a time.
class InstantJob : public std::enable_shared_from_this<InstantJob>
{
public:
	// Watches the copy `driver` runs on the first disk's s.disk, then
	// starts and watches each next one's, until all ended: on a job
	// thread (virtsnapd; returns at once) or here. Returns the states as
	// they are when this returns.
	static std::vector<InstantState> watch(Context &ctx, std::vector<InstantState> disks,
					       std::shared_ptr<hypervisor::Driver> driver);

	InstantJob(Context &ctx, std::vector<InstantState> disks, std::shared_ptr<hypervisor::Driver> driver)
		: ctx_(ctx), disks_(std::move(disks)), driver_(std::move(driver))
	{
	}

	// The copy is done (its image stands alone): stop the export, record
	// and announce it.
	static void finish(Context &ctx, InstantState &s);
	static void failed(Context &ctx, InstantState &s, const std::string &why);

private:
	void run();
	// Until the copy of `s` ends (true) or the job is cancelled (false).
	bool follow(InstantState &s);
	void retireAll();

	Context &ctx_;
	std::vector<InstantState> disks_;
	std::shared_ptr<hypervisor::Driver> driver_;
	JobRunner::CancelFlag cancel_; // the last disk's: each is set at shutdown
};

} // namespace virtsnap::daemon
