// Catalog rows from what the store holds: the catalog indexes manifests and
// volume records, and can always be rebuilt from them.
#pragma once

#include "catalog/catalog.h"
#include "engine/resources.h"
#include "store/manifest.h"

namespace virtsnap::daemon {

catalog::SnapshotRow snapshotRow(const store::Manifest &m, SnapshotState state, const std::string &message = "");
// `target`: how the instance is reached (hypervisor::Target::key()).
catalog::VolumeRow volumeRow(const engine::VolumeRecord &v, const std::string &target = "");

} // namespace virtsnap::daemon
