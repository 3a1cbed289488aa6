// The two notices virtsnapd emits when a snapshot job ends, shaped like the
// EventBridge events AWS EBS sends ("EBS Snapshot Notification" and "EBS
// Multi-Volume Snapshots Completion Status"), so rules and scripts written
// for those read ours with few changes. The `detail` field names are AWS's
// (snapshot_id, source, startTime, endTime, event, result, cause,
// request-id; snapshots[{snapshot_id, source, status}]). Where we differ:
//   - top-level "source" is "virtsnap", not "aws.ec2": these events do not
//     come from AWS, and a rule matching aws.ec2 must not fire on them;
//   - detail ids are plain ids (snap-..., vol-...), which is what our CLI
//     takes; AWS puts ARNs there. "resources" keeps the ARN form, as
//     "arn:virtsnap:ec2:<region>:<account>:snapshot/<id>";
//   - "time" carries milliseconds (ISO 8601 UTC, as isoTimeNow()).
#pragma once

#include <string>
#include <vector>

#include "json/json.h"

namespace virtsnap::events {

inline constexpr const char *kEventSource = "virtsnap";
inline constexpr const char *kSnapshotNotification = "EBS Snapshot Notification";
inline constexpr const char *kMultiVolumeCompletion = "EBS Multi-Volume Snapshots Completion Status";

// One snapshot job ended: createSnapshot, copySnapshot or shareSnapshot.
struct SnapshotNotice {
	std::string event;     // "createSnapshot" | "copySnapshot" | "shareSnapshot"
	std::string result;    // "succeeded" | "failed"
	std::string cause;     // "" on success
	std::string snapshotId;
	// createSnapshot: the volume id; copySnapshot: the source snapshot id;
	// shareSnapshot: the account that shared it (AWS's meaning).
	std::string source;
	std::string startTime, endTime; // ISO 8601 UTC
	std::string region = "local", account = "";
	std::string requestId; // "request-id"; AWS sends it, often empty
};

struct SetMember {
	std::string snapshotId, source, status; // status "completed" | "error"
};

// A multi-volume set (create-snapshots) ended: one notice lists every
// snapshot of the set, all "completed" or (if any disk failed) all "error".
struct MultiVolumeNotice {
	std::string event = "createSnapshots";
	std::string result; // "succeeded" | "failed"
	std::string cause;
	std::string requestId; // the set id
	std::vector<SetMember> snapshots;
	std::string startTime, endTime;
	std::string region = "local", account = "";
};

// A lifecycle policy's run failed: it deleted nothing. DLM says so with a
// "DLM Policy State Change" event whose state is ERROR; ours names the
// schedule and the cause too.
inline constexpr const char *kPolicyStateChange = "DLM Policy State Change";
struct PolicyRunNotice {
	std::string policyId, scheduleName;
	std::string cause;
	std::string startTime, endTime;
	std::string region = "local", account = "";
};

// An instant restore's volume stands alone (or its copy failed): EBS's
// "EBS Volume Notification" for createVolume, with what the restore
// measured besides AWS's fields (event, result, cause, request-id).
inline constexpr const char *kVolumeNotification = "EBS Volume Notification";
struct VolumeNotice {
	std::string result; // "available" | "failed"
	std::string cause;
	std::string requestId; // the instant restore's job id
	std::string snapshotId, target;
	int64_t readyMillis = 0;  // from the request until a guest could start on it
	int64_t copiedMillis = 0; // from the request until the copy ended
	uint64_t bytesServed = 0, bytesFromStore = 0;
	std::string region = "local", account = "";
};

// Each call gives the event a fresh random "id" (UUID form) and "time" now.
virtsnap::Json toJson(const SnapshotNotice &notice);
virtsnap::Json toJson(const MultiVolumeNotice &notice);
virtsnap::Json toJson(const PolicyRunNotice &notice);
virtsnap::Json toJson(const VolumeNotice &notice);

} // namespace virtsnap::events
