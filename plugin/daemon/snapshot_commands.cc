// describe-snapshots, delete-snapshot and wait snapshot-completed.
#include <algorithm>
#include <thread>

#include "access.h"

#include "catalog/catalog.h"
#include "catalog_sync.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "ec2_output.h"
#include "engine/accounts.h"
#include "engine/maintenance.h"
#include "handlers.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

// --owner-ids self|ID... and --restorable-by-user-ids ID...: account ids.
Result<std::vector<std::string>> accountIdsOf(const Call &call, const std::string &option, bool selfAllowed)
{
	std::vector<std::string> out;
	for (const std::string &id : call.args.all(option)) {
		if (selfAllowed && id == "self")
			out.push_back(call.accountId);
		else if (engine::isAccountId(id))
			out.push_back(id);
		else
			return fail(errc::kInvalidParameterValue, "--" + option + " '" + id + "' is not an account id" +
									  (selfAllowed ? " (12 digits) or self" : " (12 digits)"));
	}
	return out;
}

// The default account owns the rows from before accounts (owner ""):
// a filter naming it matches them too.
void addLegacyOwner(const Context &ctx, catalog::Filter &f)
{
	if (std::find(f.values.begin(), f.values.end(), ctx.defaultAccount) != f.values.end())
		f.values.push_back("");
}

// Rows as the caller may see them: the owner an account id.
Json visibleSnapshotsJson(const Context &ctx, std::vector<catalog::SnapshotRow> rows)
{
	for (catalog::SnapshotRow &r : rows)
		r.ownerId = ownerOf(ctx, r);
	return snapshotsJson(rows);
}

} // namespace

Result<Reply> describeSnapshots(Context &ctx, const Call &call)
{
	VS_ASSIGN(DescribeRequest req, parseDescribe(call.args));
	VS_ASSIGN(auto owners, accountIdsOf(call, "owner-ids", true));
	VS_ASSIGN(auto restorableBy, accountIdsOf(call, "restorable-by-user-ids", false));
	expireBlockWrites(ctx); // a block write past its timeout shows as error
	// Other hosts may write to the same store (catalog_sync.h).
	VS_TRY(ctx.sync->sync(*ctx.store, *ctx.catalog, call.args.has("refresh")));
	VS_TRY(ctx.sync->learn(*ctx.store, *ctx.catalog, req.snapshotIds));
	// An id the account may not see is one that does not exist.
	for (const std::string &id : req.snapshotIds)
		VS_TRY(visibleSnapshot(ctx, call, id));
	for (catalog::Filter &f : req.filters)
		if (f.name == "owner-id")
			addLegacyOwner(ctx, f);
	if (!owners.empty()) {
		req.filters.push_back({"owner-id", owners});
		addLegacyOwner(ctx, req.filters.back());
	}
	std::vector<catalog::Scope> scopes;
	VS_ASSIGN(scopes.emplace_back(), scopeOf(ctx, {call.accountId}));
	if (!restorableBy.empty()) {
		VS_ASSIGN(scopes.emplace_back(), scopeOf(ctx, restorableBy));
	}
	VS_ASSIGN(catalog::Page page, ctx.catalog->describeSnapshots(req.filters, req.snapshotIds, req.maxResults,
								     req.nextToken, scopes));
	Json doc = visibleSnapshotsJson(ctx, page.snapshots);
	if (!page.nextToken.empty())
		doc.set("NextToken", Json::string(page.nextToken));
	return ok(doc);
}

Result<Reply> deleteSnapshot(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("snapshot-id"));
	VS_TRY(checkSnapshotId(id));
	// Another account's snapshot does not exist for the caller; one
	// shared with it is not the caller's to delete.
	VS_TRY(ownedSnapshot(ctx, call, id));
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
	for (const std::string &id : req.snapshotIds)
		VS_TRY(visibleSnapshot(ctx, call, id));
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
			Reply reply = ok(visibleSnapshotsJson(ctx, page.snapshots));
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
