// Resource ids and times as the EC2 API shapes them: what they look like.
// Minting them takes randomness and SHA-256: crypto/resource_ids.h.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "error.h"

namespace virtsnap {

bool isSnapshotId(std::string_view s);
bool isVolumeId(std::string_view s);
// "ss-" + 17 hex digits: a snapshot set, and the libvirt checkpoint of it.
bool isSnapshotSetId(std::string_view s);
// "policy-" + 17 hex digits: a lifecycle policy (DLM's ids look alike).
bool isPolicyId(std::string_view s);
// InvalidSnapshotID.Malformed unless isSnapshotId(s).
Result<void> checkSnapshotId(std::string_view s);

// ISO 8601 UTC with milliseconds: 2026-11-23T02:41:07.123Z
std::string isoTimeNow();
std::string isoTime(std::chrono::system_clock::time_point t);
// The reverse, for times users give: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS,
// with optional fractions and a Z, always UTC. InvalidParameterValue
// naming `what` otherwise.
Result<std::chrono::system_clock::time_point> parseIsoTime(std::string_view text, const std::string &what);

} // namespace virtsnap
