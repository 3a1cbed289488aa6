// What commands print: the shapes of EC2's DescribeSnapshots and
// DescribeVolumes, plus virtsnap's own members.
#pragma once

#include <vector>

#include "catalog/catalog.h"
#include "core/product_code.h"
#include "context.h"
#include "engine/block_api.h"
#include "store/gc.h"
#include "store/verify.h"

namespace virtsnap::daemon {

Json snapshotJson(const catalog::SnapshotRow &row);
// [{"ProductCodeId", "ProductCodeType"}], as EC2 lists them.
Json productCodesJson(const std::vector<ProductCode> &codes);
Json volumeJson(const catalog::VolumeRow &row);
// {"Snapshots": [...]}
Json snapshotsJson(const std::vector<catalog::SnapshotRow> &rows);

// The snapshots a create made: one snapshot, or {"Snapshots": [...]} for a
// set; a failure when any of them is in error.
Reply createdReply(const std::vector<catalog::SnapshotRow> &rows, bool oneDisk);

// verify's report, failing with StoreCorrupted naming the damaged ones.
Reply verifyReply(const store::VerifyReport &report);
Json gcJson(const store::GcReport &report);
// Unix seconds (the store's clock) as EC2 prints times.
Json timeJson(int64_t unixSeconds);

// The EBS direct APIs' answers: ListSnapshotBlocks, ListChangedBlocks, and
// GetSnapshotBlock's (the data goes to a file: its length and SHA-256).
Json blockListJson(const engine::BlockList &list);
Json changedBlocksJson(const engine::ChangedBlockList &list);
Json blockDataJson(std::span<const uint8_t> data);
// StartSnapshot's answer: the pending snapshot, with EBS's BlockSize.
Json startedSnapshotJson(const catalog::SnapshotRow &row);

} // namespace virtsnap::daemon
