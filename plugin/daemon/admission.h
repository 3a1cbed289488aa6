// Who may start what, right now: the pending limits per volume, the
// captures alive, gc's exclusion of captures, and the instances whose disks
// restore-instance is writing. One lock guards them, and nothing else.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::daemon {

class Admission
{
public:
	// How many snapshots of a volume are pending now (its catalog rows),
	// and how many it may have.
	struct Limits {
		std::function<Result<int>(const std::string &volume)> pending;
		std::function<int(const std::string &volume, std::string *volumeClass)> limit;
	};

	// Counts one request against the pending limit of each volume, before
	// its rows exist, so two requests cannot both pass the limit.
	// ConcurrentSnapshotLimitExceeded names the volume and changes nothing.
	Result<void> admit(const std::vector<std::string> &volumes, const Limits &limits);
	// The request's rows are written by `record`, under the lock, and its
	// count here dropped at once: no other request counts it twice or not
	// at all. The count goes whatever `record` returns.
	Result<void> settle(const std::vector<std::string> &volumes, const std::function<Result<void>()> &record);
	// The request failed before it had rows.
	void withdraw(const std::vector<std::string> &volumes);

	// Captures: QEMU runs one fleecing job per disk, libvirt one backup job
	// per domain, so a claim is a set of volumes (and instance keys). False
	// while any of them is claimed, or while gc runs.
	bool tryClaim(const std::vector<std::string> &claims);
	// Waits until the claim is had (true) or `stop()` says to give up
	// (false); `stop` is asked whenever something changes.
	bool waitClaim(const std::vector<std::string> &claims, const std::function<bool()> &stop);
	void release(const std::vector<std::string> &claims);
	bool capturing(const std::string &claim);
	// Makes waiters ask their `stop` again (a job was cancelled).
	void wake();

	// gc sweeps chunks that a snapshot begun earlier may rely on (its
	// parent's): IncorrectState while any snapshot is admitted or
	// capturing; until endGc(), no capture starts.
	Result<void> beginGc();
	void endGc();

	// IncorrectState when another restore of the instance runs.
	Result<void> beginRestore(const std::string &instanceKey, const std::string &described);
	void endRestore(const std::string &instanceKey);
	bool restoring(const std::string &instanceKey);

private:
	bool tryClaimLocked(const std::vector<std::string> &claims);
	void withdrawLocked(const std::vector<std::string> &volumes);

	std::mutex mutex_;
	std::condition_variable changed_;
	std::map<std::string, int> admitted_; // volume -> requests counted, rows not yet written
	std::set<std::string> capturing_;
	bool gcActive_ = false;
	std::set<std::string> restoring_;
};

} // namespace virtsnap::daemon
