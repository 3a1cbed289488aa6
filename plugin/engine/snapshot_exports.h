// serve-snapshot, describe-exports and stop-serving: a completed snapshot
// served over NBD by nbdkit with virtsnap's plugin (plugin/nbd), in the
// background, read-only, or writable through nbdkit's cow filter whose
// overlay lives in the state directory (the snapshot is never written).
// Each export is a record in the store (store/export_records.h), which the
// serving nbdkit renews: while it holds, gc on any host keeps the
// snapshot's chunks and deleteSnapshot refuses it (InvalidSnapshot.InUse).
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "store/export_records.h"

namespace virtsnap::engine {

struct ServeRequest {
	std::string snapshotId;
	std::filesystem::path socket;     // a unix socket to create, or
	std::optional<uint16_t> port;     // a TCP port on `bind`
	std::string bind = "127.0.0.1";
	bool writable = false;
	std::filesystem::path exportsDir; // in the state directory: one folder per export
	// How the plugin opens the store: names of files, never a key.
	std::string storeUrl;
	std::filesystem::path keyFile;
	std::filesystem::path s3CredentialsFile;
	std::chrono::seconds timeout{30};
	// Where nbdkit leaves its read counts when it stops (the plugin's
	// stats-file); empty: nowhere.
	std::filesystem::path statsFile;
};

// The plugin nbdkit loads: $VIRTSNAP_NBDKIT_PLUGIN, else where virtsnap
// installed it.
std::string nbdkitPluginPath();

// Starts nbdkit and returns once it listens. The snapshot's manifest must
// be in the store (a completed snapshot).
Result<store::ExportRecord> serveSnapshot(store::Store &store, const ServeRequest &request);

struct ExportStatus {
	store::ExportRecord record;
	// "active"; "gone": this host's nbdkit had died, and its record and
	// overlay are removed now; "expired": another host's server stopped
	// renewing (gc removes the record).
	std::string state;
};
// Every export of the store, or those named (ResourceNotFoundException
// for one that does not exist).
Result<std::vector<ExportStatus>> describeExports(store::Store &store, const std::vector<std::string> &exportIds);

// Stops this host's nbdkit of the export and removes its record and
// overlay. IncorrectState for another host's export while it holds.
Result<store::ExportRecord> stopServing(store::Store &store, const std::string &exportId);

// InvalidSnapshot.InUse while an export of the snapshot holds (this
// host's whose nbdkit died are removed on the way).
Result<void> checkNotServed(store::Store &store, const std::string &snapshotId);
// Puts the snapshot's manifest back from its export record's copy (a
// deletion that raced serve-snapshot on another host).
Result<void> restoreServedManifest(store::Store &store, const std::string &snapshotId);

} // namespace virtsnap::engine
