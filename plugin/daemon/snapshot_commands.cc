// describe-snapshots, delete-snapshot and wait snapshot-completed.
#include <thread>

#include "catalog/catalog.h"
#include "catalog_sync.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "ec2_output.h"
#include "engine/maintenance.h"
#include "handlers.h"
#include "requests.h"

namespace virtsnap::daemon {

Result<Reply> describeSnapshots(Context &ctx, const Call &call)
{
	VS_ASSIGN(DescribeRequest req, parseDescribe(call.args));
	expireBlockWrites(ctx); // a block write past its timeout shows as error
	// Other hosts may write to the same store (catalog_sync.h).
	VS_TRY(ctx.sync->sync(*ctx.store, *ctx.catalog, call.args.has("refresh")));
	VS_TRY(ctx.sync->learn(*ctx.store, *ctx.catalog, req.snapshotIds));
	VS_ASSIGN(catalog::Page page,
		  ctx.catalog->describeSnapshots(req.filters, req.snapshotIds, req.maxResults, req.nextToken));
	Json doc = snapshotsJson(page.snapshots);
	if (!page.nextToken.empty())
		doc.set("NextToken", Json::string(page.nextToken));
	return ok(doc);
}

Result<Reply> deleteSnapshot(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	VS_TRY(checkSnapshotId(id));
	VS_TRY(ctx.sync->learn(*ctx.store, *ctx.catalog, {id})); // another host's snapshot
	Json j = Json::object();
	j.set("SnapshotId", Json::string(id));
	// One transaction: a job finishing meanwhile sees the request or not,
	// never half of it.
	VS_TRY(ctx.catalog->transaction([&]() -> Result<void> {
		VS_ASSIGN(auto row, ctx.catalog->getSnapshot(id));
		if (!row)
			return fail(errc::kSnapshotNotFound, "snapshot " + id + " does not exist");
		if (row->state == SnapshotState::Pending) {
			// As on EBS: the delete takes effect when the snapshot completes.
			row->deleteRequested = true;
			j.set("Deleted", Json::boolean(false));
			j.set("DeleteOnCompletion", Json::boolean(true));
			return ctx.catalog->putSnapshot(*row);
		}
		if (row->state == SnapshotState::Completed) {
			auto removed = engine::deleteSnapshot(*ctx.store, id);
			if (!removed && removed.error().code != errc::kSnapshotNotFound)
				return std::unexpected(removed.error());
			if (removed && removed->recycleBinExitTime)
				j.set("RecycleBinExitTime", timeJson(*removed->recycleBinExitTime));
		}
		if (row->state == SnapshotState::Error)
			VS_TRY(forgetBlockWrite(ctx, id));
		j.set("Deleted", Json::boolean(true));
		return ctx.catalog->removeSnapshot(id);
	}));
	return ok(j);
}

Result<Reply> waitSnapshotCompleted(Context &ctx, const Call &call)
{
	VS_ASSIGN(WaitRequest req, parseWait(call.args));
	auto deadline = std::chrono::steady_clock::now() + req.timeout;
	for (;;) {
		VS_ASSIGN(catalog::Page page, ctx.catalog->describeSnapshots({}, req.snapshotIds, 0, ""));
		bool pending = false;
		std::string failed;
		for (const catalog::SnapshotRow &r : page.snapshots) {
			pending |= r.state == SnapshotState::Pending;
			if (r.state == SnapshotState::Error)
				failed += (failed.empty() ? "" : ", ") + r.snapshotId + " (" + r.stateMessage + ")";
		}
		if (!failed.empty() || !pending) {
			Reply reply = ok(snapshotsJson(page.snapshots));
			if (!failed.empty())
				reply.failure = Error{errc::kIncorrectState, "snapshot failed: " + failed};
			return reply;
		}
		if (std::chrono::steady_clock::now() >= deadline)
			return fail(errc::kIncorrectState, "timed out after " + std::to_string(req.timeout.count()) +
								   " s waiting for the snapshots to complete");
		if (cancelRequested())
			return fail(errc::kIncorrectState, "interrupted while waiting for the snapshots to complete");
		std::this_thread::sleep_for(std::chrono::milliseconds(200));
	}
}

} // namespace virtsnap::daemon
