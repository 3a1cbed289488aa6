// The mutable side of snapshots, volumes and instances: tags, volume
// classes, instance attributes. Kept as store records (the store is the
// source of truth; a catalog only indexes it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace virtsnap::engine {

struct VolumeRecord {
	std::string volumeId;
	std::string instanceKey;
	std::string instanceName;
	std::string diskId;
	uint64_t size = 0;
	std::string volumeClass = "standard"; // standard | st1 | sc1
	store::Tags tags;
	// Marked encrypted by modify-volume (a LUKS image is encrypted
	// whatever this says), and the key its snapshots carry then.
	bool encrypted = false;
	std::string kmsKeyId;
	// Those of the snapshots it was restored from (EC2: a volume created
	// from a snapshot has its product codes); its snapshots carry them.
	std::vector<ProductCode> productCodes;
};

struct InstanceRecord {
	std::string instanceId; // "i-" + 17 hex digits, derived from the instance key
	std::string instanceKey;
	std::string name;
	bool hibernationEnabled = false;
	std::vector<ProductCode> productCodes; // given to register-instance; its snapshots carry them
};

Result<std::optional<VolumeRecord>> loadVolume(store::Store &store, const std::string &volumeId);
Result<void> saveVolume(store::Store &store, const VolumeRecord &volume);
Result<std::vector<VolumeRecord>> listVolumes(store::Store &store);
// A snapshot restored into its volume again (create-volume,
// restore-instance, instant restore) gives the volume its product codes:
// the record, made from the manifest if there is none, gets those it
// lacks. Returns the record when it changed. Snapshots of no volume
// (copies, block writes: kDirectVolumeId) give nothing.
Result<std::optional<VolumeRecord>> giveVolumeProductCodes(store::Store &store, const store::Manifest &m);

Result<std::optional<InstanceRecord>> loadInstance(store::Store &store, const std::string &instanceId);
Result<void> saveInstance(store::Store &store, const InstanceRecord &instance);

// Tags of a snap- or vol- id: add (replacing values of existing keys) or
// remove (by key, or by key and value when one is given).
Result<void> createTags(store::Store &store, const std::string &resourceId, const store::Tags &tags);
Result<void> deleteTags(store::Store &store, const std::string &resourceId, const store::Tags &tags);
// Makes the tags of a snap- or vol- id exactly `tags`.
Result<void> replaceTags(store::Store &store, const std::string &resourceId, const store::Tags &tags);
// The same changes on tags in memory (a pending snapshot's, in the catalog).
void mergeTags(store::Tags &into, const store::Tags &add);
void removeTags(store::Tags &from, const store::Tags &remove);

// Checks a tag list: KEY=VALUE, keys unique, sizes as EC2 limits them.
Result<store::Tags> parseTags(const std::vector<std::string> &specs, bool valuesOptional = false);

} // namespace virtsnap::engine
