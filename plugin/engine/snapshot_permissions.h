// A snapshot's createVolumePermission (EC2's ModifySnapshotAttribute): the
// accounts it is shared with, and whether it is public. Permissions change
// after a snapshot completes and manifests never change, so they are a
// store record (records/snapshot-permissions/<snap-id>), absent when the
// snapshot is shared with nobody. Read from the store on every check, not
// from the catalog: a permission removed on one host holds on every host
// at once.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::store {
class Store;
}

namespace virtsnap::engine {

struct SnapshotPermissions {
	std::vector<std::string> userIds; // accounts, sorted, each once
	bool isPublic = false;            // group "all"

	bool empty() const { return userIds.empty() && !isPublic; }
	// Whether `accountId` (not the owner) may see and restore it.
	bool grants(const std::string &accountId) const;
};

Result<SnapshotPermissions> getSnapshotPermissions(store::Store &store, const std::string &snapshotId);
// Replaces them whole; empty ones remove the record.
Result<void> putSnapshotPermissions(store::Store &store, const std::string &snapshotId,
				    const SnapshotPermissions &permissions);
// Every shared snapshot's permissions, by snapshot id.
Result<std::map<std::string, SnapshotPermissions>> allSnapshotPermissions(store::Store &store);

} // namespace virtsnap::engine
