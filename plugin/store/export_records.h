// Snapshots served over NBD (serve-snapshot), recorded in the store rather
// than on one host (FORMAT.md, "Export records"), so that every host
// sharing the store sees them: gc keeps a served snapshot's chunks (the
// record is a held manifest, held_manifests.h) and deleteSnapshot refuses
// it, on this host and any other. The serving nbdkit renews HeldUntil
// while it lives; a record its server stopped renewing expires, and gc
// removes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "held_manifests.h"

namespace virtsnap::store {

inline constexpr const char *kSnapshotExportRecords = "snapshot-exports";
// How long a record holds past its last renewal, and how often the server
// renews it: a dead server's snapshot is free again after at most this.
inline constexpr int64_t kExportHoldSeconds = 300;
inline constexpr int64_t kExportRenewSeconds = 60;

struct ExportRecord {
	std::string exportId;
	std::string snapshotId;
	std::string host;
	int64_t pid = 0;          // nbdkit's, on `host`; 0 until it started
	std::string socket;       // a unix socket, or
	int64_t port = 0;         // a TCP port on `bind`
	std::string bind;
	std::string uri;
	bool writable = false;
	std::string overlayDir;   // --writable: the cow filter's files, on `host`
	int64_t startTime = 0;    // unix seconds, the store's clock
	int64_t heldUntil = 0;
	Manifest manifest;
};

Json exportRecordJson(const ExportRecord &r);
Result<ExportRecord> parseExportRecord(const Json &record, const std::string &where);

Result<void> putExportRecord(Store &store, const ExportRecord &r);
// Every record, expired ones too (until gc removes them).
Result<std::vector<ExportRecord>> listExportRecords(const Store &store);
// Moves the record's HeldUntil on from the store's time now; false when
// the record is gone (stop-serving removed it): it is not made again.
Result<bool> renewExportRecord(Store &store, const std::string &exportId);
// The records of `snapshotId` that hold at `now`.
Result<std::vector<ExportRecord>> liveExportsOf(const Store &store, const std::string &snapshotId, int64_t now);

} // namespace virtsnap::store
