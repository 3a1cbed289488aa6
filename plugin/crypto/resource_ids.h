// Minting resource ids as EC2 shapes them: a prefix and 17 lowercase hex
// digits (core/ids.h checks them), random for what is created, derived by
// SHA-256 for what must come out the same every time.
#pragma once

#include <string>
#include <string_view>

#include "core/error.h"

namespace virtsnap {

// "snap-", "ss-" ... + 17 random hex digits.
Result<std::string> newResourceId(std::string_view prefix);
// The same 17 digits under another prefix: the job of a snapshot
// ("job-" + its digits), the set a queued request's ids belong to.
std::string relatedId(std::string_view prefix, std::string_view id);

// "vol-" + 17 hex digits of the instance and the disk, so the same disk of
// the same instance always has the same id. Persisted in every manifest:
// never change how it is derived.
std::string volumeIdFor(std::string_view instanceKey, std::string_view diskId);
// "i-" + 17 hex digits of the instance key; as stable as volume ids.
std::string instanceIdFor(std::string_view instanceKey);

} // namespace virtsnap
