// create-snapshot and create-snapshots: parse, answer a retried client
// token, admit against the pending limits, then start or queue the job
// (snapshot_job.h).
#include <cstdio>

#include "access.h"
#include "admission.h"
#include "catalog/catalog.h"
#include "crypto/resource_ids.h"
#include "driver_cache.h"
#include "ec2_output.h"
#include "engine/resources.h"
#include "handlers.h"
#include "snapshot_job.h"

namespace virtsnap::daemon {

Result<std::optional<catalog::RequestRow>> earlierRequest(Context &ctx, const std::string &clientToken,
							  const std::string &requestHash)
{
	if (clientToken.empty())
		return std::nullopt;
	VS_ASSIGN(auto seen, ctx.catalog->getRequest(clientToken));
	if (seen && seen->requestHash != requestHash)
		return fail(errc::kIdempotentMismatch, "client token '" + clientToken + "' was used with other parameters");
	return seen;
}

Admission::Limits pendingLimits(Context &ctx)
{
	return {
		[&ctx](const std::string &volume) { return ctx.catalog->countPending(volume); },
		[&ctx](const std::string &volume, std::string *volumeClass) {
			auto record = engine::loadVolume(*ctx.store, volume);
			*volumeClass = record && *record ? (*record)->volumeClass : "standard";
			return (*volumeClass == "st1" || *volumeClass == "sc1") ? 1 : 5;
		},
	};
}

namespace {

// A retried request with the same client token gets the same snapshots;
// the same token with other parameters is an error. nullopt: a new token.
Result<std::optional<Reply>> replay(Context &ctx, const CreateRequest &req)
{
	VS_ASSIGN(auto seen, earlierRequest(ctx, req.clientToken, req.requestHash));
	if (!seen)
		return std::nullopt;
	std::vector<catalog::SnapshotRow> rows;
	auto ids = Json::parse(seen->response);
	for (size_t i = 0; ids && i < ids->size(); i++)
		if (auto row = ctx.catalog->getSnapshot(ids->at(i).asString()); row && *row)
			rows.push_back(**row);
	// As first answered: the snapshots as they are now, whatever their state.
	if (req.oneDisk && rows.size() == 1)
		return ok(snapshotJson(rows.front()));
	return ok(snapshotsJson(rows));
}

Result<Reply> create(Context &ctx, const Call &call, bool oneDisk)
{
	VS_ASSIGN(CreateRequest req, parseCreate(call.args, oneDisk, ctx.options.libvirtUri));
	req.set.ownerId = call.uid;
	req.set.accountId = call.accountId;
	req.set.warn = [](const std::string &w) { std::fprintf(stderr, "virtsnap: warning: %s\n", w.c_str()); };
	VS_ASSIGN(auto replayed, replay(ctx, req));
	if (replayed)
		return std::move(*replayed);
	return startCreate(ctx, std::move(req), call.progress);
}

} // namespace

Result<Reply> startCreate(Context &ctx, CreateRequest req, const engine::ProgressFn &progress)
{
	VS_ASSIGN(auto driver, ctx.drivers->get(req.target));
	req.set.driver = driver;
	req.set.target = req.target.key();
	// Admission happens before the point in time, so a refused request
	// changes nothing.
	AdmittedCreate a;
	VS_ASSIGN(a.instance, driver->instance());
	VS_ASSIGN(a.disks, engine::selectDisks(*driver, req.set));
	for (const hypervisor::DiskInfo &d : a.disks)
		a.volumes.push_back(volumeIdFor(a.instance.key, d.diskId));
	a.claims = a.volumes;
	if (driver->oneCaptureAtATime())
		a.claims.push_back(a.instance.key);
	// Before anything is captured or queued: the volumes' keys.
	for (const std::string &volume : a.volumes) {
		VS_ASSIGN(auto record, engine::loadVolume(*ctx.store, volume));
		if (record)
			VS_TRY(requireVolumeKey(ctx, req.set.accountId, *record));
	}
	a.request = std::move(req);
	VS_TRY(ctx.admission->admit(a.volumes, pendingLimits(ctx)));
	// One capture per disk (QEMU) or domain (libvirt): while one is alive,
	// a new snapshot of it waits and takes its point in time then. In
	// process nothing else captures: no claim.
	if (!ctx.options.background)
		return CreateJob::startNow(ctx, std::move(a), progress);
	a.claimed = ctx.admission->tryClaim(a.claims);
	if (!a.claimed)
		return CreateJob::queue(ctx, std::move(a));
	return CreateJob::startNow(ctx, std::move(a), progress);
}

Result<Reply> createSnapshot(Context &ctx, const Call &call)
{
	return create(ctx, call, true);
}

Result<Reply> createSnapshots(Context &ctx, const Call &call)
{
	return create(ctx, call, false);
}

} // namespace virtsnap::daemon
