// Manifests gc keeps outside snapshots/ (FORMAT.md, "Held manifests"): a
// locked snapshot's copy, so that its chunks outlive a manifest removed
// behind virtsnap's back, and a deleted snapshot waiting in the Recycle
// Bin. Each is a sealed record of its kind whose JSON holds "Manifest"
// (the manifest's JSON) and "HeldUntil" (unix seconds on the backend's
// clock, so that every host sharing the store agrees); what else the
// record holds is the engine's.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "json/json.h"
#include "store.h"

namespace virtsnap::store {

inline constexpr const char *kSnapshotLockRecords = "snapshot-locks";
inline constexpr const char *kRecycleBinRecords = "recycle-bin";

// A record's two fields gc reads, parsed: Corrupt when either is missing.
struct HeldManifest {
	Manifest manifest;
	int64_t heldUntil = 0;
};
Result<HeldManifest> parseHeldManifest(const Json &record, const std::string &where);
// Adds the two fields to a record's JSON.
void setHeldManifest(Json &record, const Manifest &m, int64_t heldUntil);

// What gc marks from besides the manifests: every held manifest whose time
// is not up at `now` (locks, the Recycle Bin, snapshots served over NBD:
// export_records.h), and the ids of the records whose time is up (removed
// by gc: a Recycle Bin entry is then deleted for good, an expired lock
// stops being listed, an export whose server stopped renewing is gone). A record that does not open or parse fails the
// call: what it holds is then unknown.
struct HeldSet {
	std::vector<Manifest> held;
	std::vector<std::string> expiredBinEntries;
	std::vector<std::string> expiredLocks;
	std::vector<std::string> expiredExports;
};
Result<HeldSet> listHeldManifests(const Store &store, int64_t now);

int64_t unixSeconds(std::chrono::system_clock::time_point t);
// The backend's clock in unix seconds: what HeldUntil, and the times of
// locks and Recycle Bin entries, are in.
Result<int64_t> storeTime(Store &store);
// A record's JSON; nullopt when it is absent, Corrupt when it is not JSON.
Result<std::optional<Json>> getJsonRecord(const Store &store, const std::string &kind, const std::string &id);

} // namespace virtsnap::store
