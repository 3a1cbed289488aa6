#include "catalog_rows.h"

namespace virtsnap::daemon {

catalog::SnapshotRow snapshotRow(const store::Manifest &m, SnapshotState state, const std::string &message)
{
	catalog::SnapshotRow r;
	r.snapshotId = m.snapshotId;
	r.volumeId = m.volumeId;
	r.state = state;
	r.stateMessage = message;
	r.progress = state == SnapshotState::Completed ? 100 : 0;
	r.startTime = m.startTime;
	r.completionTime = m.completionTime;
	r.description = m.description;
	r.name = m.name;
	r.ownerId = m.accountId; // the owning account; "" (from before accounts): the default
	r.consistencyLevel = m.consistency;
	r.encrypted = m.encrypted;
	r.kmsKeyId = m.kmsKeyId;
	r.volumeSize = m.volumeSize;
	r.bytesAdded = m.stats.bytesAdded;
	r.bytesRead = m.stats.bytesRead;
	r.snapshotSetId = m.snapshotSetId;
	r.parentSnapshotId = m.parentSnapshotId;
	r.captureMode = m.captureMode;
	r.captureReason = m.captureReason;
	r.quiesceNote = m.quiesceNote;
	r.diskId = m.volume.diskId;
	r.instanceName = m.volume.instanceName;
	r.freezeMillis = m.freezeMillis;
	r.sourceSnapshotId = m.source.snapshotId;
	r.sourceStore = m.source.storeUrl;
	r.bytesTransferred = m.stats.bytesTransferred;
	r.tags = m.tags;
	for (const ProductCode &code : m.productCodes)
		r.productCodes.push_back(toString(code));
	return r;
}

catalog::VolumeRow volumeRow(const engine::VolumeRecord &v, const std::string &target)
{
	catalog::VolumeRow r;
	r.volumeId = v.volumeId;
	r.instanceKey = v.instanceKey;
	r.instanceName = v.instanceName;
	r.diskId = v.diskId;
	r.volumeClass = v.volumeClass;
	r.target = target;
	r.size = v.size;
	r.encrypted = v.encrypted;
	r.kmsKeyId = v.kmsKeyId;
	r.tags = v.tags;
	for (const ProductCode &code : v.productCodes)
		r.productCodes.push_back(toString(code));
	return r;
}

} // namespace virtsnap::daemon
