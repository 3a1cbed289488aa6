// serve-snapshot, describe-exports and stop-serving
// (engine/snapshot_exports.h).
#include "access.h"
#include "catalog/catalog.h"
#include "catalog_sync.h"
#include "ec2_output.h"
#include "engine/snapshot_exports.h"
#include "handlers.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

Json exportJson(const store::ExportRecord &r, const std::string &state)
{
	Json j = Json::object();
	j.set("ExportId", Json::string(r.exportId));
	j.set("SnapshotId", Json::string(r.snapshotId));
	j.set("State", Json::string(state));
	j.set("Uri", Json::string(r.uri));
	if (!r.socket.empty())
		j.set("Socket", Json::string(r.socket));
	else {
		j.set("Port", Json::integer(r.port));
		j.set("Bind", Json::string(r.bind));
	}
	j.set("Writable", Json::boolean(r.writable));
	j.set("Host", Json::string(r.host));
	j.set("Pid", Json::integer(r.pid));
	j.set("StartTime", timeJson(r.startTime));
	return j;
}

// nbdkit runs from /: the store's directory and the key file by absolute
// names.
std::string absoluteUrl(const std::string &url)
{
	if (url.find("://") != std::string::npos)
		return url;
	return std::filesystem::absolute(url).lexically_normal().string();
}

} // namespace

Result<Reply> serveSnapshot(Context &ctx, const Call &call)
{
	// nbdkit runs as virtsnapd's user and listens where it is told.
	VS_TRY(requireRoot(call));
	VS_ASSIGN(engine::ServeRequest req, parseServe(call.args));
	VS_ASSIGN(auto row, visibleSnapshot(ctx, call, req.snapshotId));
	VS_TRY(requireCompleted(row, "served"));
	VS_TRY(requireSnapshotKey(ctx, call, row));
	req.exportsDir = ctx.location.stateDir / "exports";
	req.storeUrl = absoluteUrl(ctx.location.url);
	req.keyFile = std::filesystem::absolute(ctx.location.keyFile);
	if (!ctx.location.s3CredentialsFile.empty())
		req.s3CredentialsFile = std::filesystem::absolute(ctx.location.s3CredentialsFile);
	req.timeout = ctx.location.timeout;
	VS_ASSIGN(store::ExportRecord r, engine::serveSnapshot(*ctx.store, req));
	return ok(exportJson(r, "active"));
}

Result<Reply> describeExports(Context &ctx, const Call &call)
{
	VS_ASSIGN(auto exports, engine::describeExports(*ctx.store, call.args.all("export-id")));
	Json list = Json::array();
	for (const engine::ExportStatus &e : exports)
		list.append(exportJson(e.record, e.state));
	Json j = Json::object();
	j.set("Exports", list);
	return ok(j);
}

Result<Reply> stopServing(Context &ctx, const Call &call)
{
	VS_TRY(requireRoot(call));
	VS_ASSIGN(std::string id, call.args.require("export-id"));
	VS_ASSIGN(store::ExportRecord r, engine::stopServing(*ctx.store, id));
	return ok(exportJson(r, "stopped"));
}

} // namespace virtsnap::daemon
