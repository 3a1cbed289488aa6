// list-snapshot-blocks, list-changed-blocks and get-snapshot-block: the read
// side of the EBS direct APIs (engine/block_api.h).

#include "access.h"
#include "catalog/catalog.h"
#include "core/acting_as.h"
#include "core/file_util.h"
#include "core/ids.h"
#include "ec2_output.h"
#include "engine/block_api.h"
#include "handlers.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

// Only completed snapshots are read this way, as on EBS. The catalog knows
// a pending or failed one; the store alone knows another host's completed
// one (its manifest), which the engine then finds or not.
Result<void> checkReadable(Context &ctx, const Call &call, const std::string &id)
{
	VS_TRY(checkSnapshotId(id));
	VS_ASSIGN(catalog::SnapshotRow row, visibleSnapshot(ctx, call, id));
	VS_TRY(requireCompleted(row, "read"));
	return requireSnapshotKey(ctx, call, row);
}

// The block into `path`, whole or not at all, readable by the caller only:
// it is a piece of a disk. Written as the caller (core/acting_as.h): where
// the caller may not write, neither does the daemon for them.
Result<void> writeBlockFile(const std::string &path, std::span<const uint8_t> data, const std::string &ownerId)
{
	VS_ASSIGN(ActingAs asCaller, ActingAs::caller(ownerId));
	auto file = TempFile::create(path, 0600);
	if (!file && file.error().code == errc::kAccessDenied)
		return fail(errc::kAccessDenied, "--output-file " + path + ": the caller may not write there");
	if (!file)
		return std::unexpected(file.error());
	VS_TRY(writeAll(file->fd(), data));
	return file->commit(true);
}

} // namespace

Result<Reply> listSnapshotBlocks(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	VS_TRY(checkReadable(ctx, call, id));
	VS_ASSIGN(engine::BlockPage page, parseBlockPage(call.args));
	VS_ASSIGN(engine::BlockList list,
		  engine::listSnapshotBlocks(*ctx.store, id, page, std::chrono::system_clock::now()));
	return ok(blockListJson(list));
}

Result<Reply> listChangedBlocks(Context &ctx, const Call &call)
{
	std::string first = call.args.get("first-snapshot-id");
	VS_ASSIGN(std::string second, call.args.require("second-snapshot-id"));
	if (call.args.has("first-snapshot-id"))
		VS_TRY(checkReadable(ctx, call, first));
	VS_TRY(checkReadable(ctx, call, second));
	VS_ASSIGN(engine::BlockPage page, parseBlockPage(call.args));
	VS_ASSIGN(engine::ChangedBlockList list,
		  engine::listChangedBlocks(*ctx.store, first, second, page, std::chrono::system_clock::now()));
	return ok(changedBlocksJson(list));
}

Result<Reply> getSnapshotBlock(Context &ctx, const Call &call)
{
	VS_ASSIGN(GetBlockRequest req, parseGetBlock(call.args));
	VS_TRY(checkReadable(ctx, call, req.snapshotId));
	VS_ASSIGN(Bytes data, engine::getSnapshotBlock(*ctx.store, req.snapshotId, req.block, req.token,
							 std::chrono::system_clock::now()));
	VS_TRY(writeBlockFile(req.outputFile, data, call.uid));
	return ok(blockDataJson(data));
}

} // namespace virtsnap::daemon
