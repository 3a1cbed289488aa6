// Instant restore (create-volume --instant, restore-instance --instant):
// a new qcow2 image whose backing is the snapshot served over NBD
// (snapshot_exports.h), so a guest can start on it at once. Its data is
// copied in afterwards, by the hypervisor that runs it
// (hypervisor::Driver::startPull: QEMU's block-stream, libvirt's block
// pull) or offline by qemu-img; once the image stands alone, the export
// stops. While it runs, the export's record keeps the snapshot's chunks
// from gc and refuses its deletion, as any export's does.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "restore_instance.h"
#include "snapshot_exports.h"
#include "store/manifest.h"

namespace virtsnap::engine {

struct InstantRequest {
	std::string snapshotId;
	std::filesystem::path target; // must not exist
	// Whose new file it is (a uid as text; empty: ours), as RestoreRequest.
	std::string writeAs;
	// How the export opens the store; its socket and stats file are
	// chosen here, in `instantDir`.
	ServeRequest serve;
	// In the state directory: the exports' read counts, and their sockets
	// unless `socket` names one.
	std::filesystem::path instantDir;
	// The export's socket (must not exist); empty: one in `instantDir`.
	// It is made 0660 with the group of its directory: the group QEMU's
	// user must be in to read the image's backing.
	std::filesystem::path socket;
	// Told when the image cannot keep the snapshot's product codes, as
	// RestoreRequest::warn.
	std::function<void(const std::string &)> warn;
};

struct InstantVolume {
	store::ExportRecord exported;
	store::Manifest manifest;
	std::filesystem::path statsFile;
	std::filesystem::path target; // the image, where it is now
};

// Serves the snapshot and creates `target`, a qcow2 image of the
// snapshot's size backed by the export (raw), marked with the snapshot's
// product codes (image_product_codes.h). On failure nothing is left:
// no file, no export.
Result<InstantVolume> createInstantVolume(store::Store &store, const InstantRequest &request);

// restore-instance --instant: each disk of `plan` (qcow2 ones only: the
// domain reads the new image as the format it names) becomes an instant
// image beside its image, taking its owner and mode, and one journal
// (restore_journal.h) swaps them all in, as restoreInstance does. A
// failure before the journal leaves every disk as it was and no export
// running. `requestFor` fills each disk's request but its target.
Result<std::vector<InstantVolume>> instantRestoreInstance(
	store::Store &store, hypervisor::Driver &driver, const InstanceRestorePlan &plan,
	const std::filesystem::path &journalDir,
	const std::function<InstantRequest(const InstanceRestorePlan::Disk &)> &requestFor);

// What the export read while it ran.
struct ExportReads {
	uint64_t served = 0;    // bytes its clients (guest and copy) read
	uint64_t fromStore = 0; // chunk bytes it fetched from the store for that
};

// Stops the export of an instant volume whose copy is done, and returns
// its read counts (zero when nbdkit left none).
Result<ExportReads> endInstantExport(store::Store &store, const std::string &exportId,
				     const std::filesystem::path &statsFile);

// The copy without a hypervisor: qemu-img rebase onto no backing, which
// writes what the image reads from its backing into it. The image must not
// be in use.
Result<void> copyInOffline(const std::filesystem::path &target, const std::string &writeAs);

} // namespace virtsnap::engine
