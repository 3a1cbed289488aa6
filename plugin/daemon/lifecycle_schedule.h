// When a lifecycle policy's schedule runs, and which of its snapshots its
// retention retires. Pure functions of the time they are given, so tests
// drive them with a fake clock; the daemon's timer passes the real one.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "lifecycle_policy.h"

namespace virtsnap::daemon {

// A snapshot's start time, to the millisecond the catalog keeps: runs a
// moment apart are ordered by it, and a second is too coarse for that.
using UtcMillis = std::chrono::sys_time<std::chrono::milliseconds>;

// "2026-12-05T03:00:00.123Z", as core/ids.h's isoTime writes the times the
// catalog keeps; nullopt for anything else.
std::optional<UtcMillis> parseUtcTime(const std::string &text);

// The first run of `rule` strictly after `t`, in UTC as DLM's: an interval
// rule runs at Times[0] (00:00 when none is given) and every Interval hours
// from there, which, as every allowed interval divides 24, is the same
// times each day. nullopt for a cron that has no run left.
std::optional<UtcTime> nextRunAfter(const CreateRule &rule, UtcTime t);

// Whether a schedule is due at `now`, given when it last ran (or, never
// run, when its policy was created or enabled). A daemon that was down
// across several slots finds it due once, not once per slot: the run
// then records `now` as its last, and the next slot is after `now`.
bool isDue(const CreateRule &rule, UtcTime lastRun, UtcTime now);

// One snapshot as retention sees it.
struct RetentionCandidate {
	std::string snapshotId;
	std::string volumeId;
	UtcMillis startTime;
	bool completed = false;
	PolicyTags tags;
	bool locked = false; // a snapshot lock holds it (engine/snapshot_locks.h)
};

// The one place that says whether retention may delete a snapshot at all:
// only one carrying this policy's id and this schedule's name, and not
// locked. Every veto retention must respect belongs here.
bool retentionMayDelete(const RetentionCandidate &snapshot, const std::string &policyId,
			const std::string &scheduleName);

// When a snapshot kept by age-based retention expires: start plus the
// interval, months and years on the calendar (January 31st plus a month
// is the last day of February).
UtcMillis retentionExpiry(const RetainRule &rule, UtcMillis start);

// Which snapshots a schedule's RetainRule retires at `now`, per volume:
// with Count, the completed ones older than its Count newest completed;
// by age, the completed ones past their expiry. Either way only once a
// newer snapshot of that volume from the schedule has completed, so a run
// that failed or is still going never costs a volume its last good one,
// and only those retentionMayDelete allows. Pending and failed snapshots
// are neither counted nor retired.
std::vector<std::string> snapshotsToRetire(const RetainRule &rule, const std::string &policyId,
					   const std::string &scheduleName,
					   std::vector<RetentionCandidate> snapshots, UtcTime now);

} // namespace virtsnap::daemon
