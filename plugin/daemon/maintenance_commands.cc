// init, verify, gc and catalog rebuild: keeping the store and its catalog.
#include <cstdlib>

#include "admission.h"
#include "catalog/catalog.h"
#include "catalog_rows.h"
#include "core/ids.h"
#include "ec2_output.h"
#include "engine/accounts.h"
#include "engine/maintenance.h"
#include "store/store.h"
#include "engine/resources.h"
#include "handlers.h"
#include "job_runner.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

Result<uint32_t> parseChunkSize(const std::string &v)
{
	char *end = nullptr;
	unsigned long n = std::strtoul(v.c_str(), &end, 10);
	if (*end == 'K' || *end == 'k')
		n <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		n <<= 20, end++;
	if (v.empty() || *end || n == 0 || n > (16ul << 20))
		return fail(errc::kInvalidParameterValue, "--chunk-size '" + v + "' is not a size");
	return uint32_t(n);
}

} // namespace

Result<Reply> initStore(Context &ctx, const Call &call)
{
	uint32_t chunkSize = engine::kDefaultChunkSize;
	if (call.args.has("chunk-size")) {
		VS_ASSIGN(chunkSize, parseChunkSize(call.args.get("chunk-size")));
	}
	store::Compression compression;
	if (call.args.has("compression")) {
		auto parsed = store::Compression::parse(call.args.get("compression"));
		if (!parsed)
			return fail(parsed.error().code, "--" + parsed.error().message);
		compression = *parsed;
	}
	VS_ASSIGN(engine::StoreCreated created, engine::initStore(ctx.location.url, backendSettings(ctx.location),
								  ctx.location.keyFile, chunkSize, compression));
	// The store's first account, the default one (engine/accounts.h).
	VS_ASSIGN(auto backend, store::openBackend(ctx.location.url, backendSettings(ctx.location)));
	VS_ASSIGN(auto opened, store::Store::open(std::move(backend), ctx.location.keyFile));
	VS_ASSIGN(std::string account, engine::ensureDefaultAccount(*opened, ctx.location.keyFile));
	Json j = Json::object();
	j.set("Store", Json::string(ctx.location.url));
	j.set("AccountId", Json::string(account));
	j.set("KeyFile", Json::string(ctx.location.keyFile.string()));
	j.set("KeyCreated", Json::boolean(created.keyCreated));
	j.set("ChunkSize", Json::integer(created.chunkSize));
	j.set("Compression", Json::string(created.compression.name()));
	return ok(j);
}

Result<Reply> verify(Context &ctx, const Call &call)
{
	for (const std::string &id : call.args.all("snapshot-id"))
		VS_TRY(checkSnapshotId(id));
	VS_ASSIGN(store::VerifyReport report, engine::verify(*ctx.store, call.args.all("snapshot-id")));
	return verifyReply(report);
}

Result<Reply> collectGarbage(Context &ctx, const Call &call)
{
	VS_ASSIGN(store::GcOptions options, parseGc(call.args));
	// No snapshot may be in flight while chunks are swept: one begun
	// earlier relies on its parent's chunks even if the parent has just
	// been deleted. New ones queue until gc ends.
	// Block writes keep their chunks between calls with no lease: gc asks
	// for them, once those past their timeout have let theirs go.
	expireBlockWrites(ctx);
	options.pinned = [&ctx] { return blockWritesPinned(ctx); };
	VS_TRY(ctx.admission->beginGc());
	auto report = engine::collectGarbage(*ctx.store, options);
	ctx.admission->endGc();
	VS_TRY(report);
	return ok(gcJson(*report));
}

Result<Reply> rebuildCatalog(Context &ctx, const Call &)
{
	// Pending rows exist only in the catalog: clearing them would lose
	// snapshots in flight, their limits and their deferred deletes.
	if (ctx.jobs->running() > 0)
		return fail(errc::kIncorrectState, "snapshots are in flight; rebuild the catalog once they have completed");
	VS_ASSIGN(std::vector<store::Manifest> manifests, engine::listSnapshots(*ctx.store));
	VS_ASSIGN(std::vector<engine::VolumeRecord> volumes, engine::listVolumes(*ctx.store));
	VS_ASSIGN(std::vector<catalog::SnapshotRow> writing, blockWriteRows(ctx));
	VS_TRY(ctx.catalog->transaction([&]() -> Result<void> {
		VS_TRY(ctx.catalog->clear());
		for (const store::Manifest &m : manifests)
			VS_TRY(ctx.catalog->putSnapshot(snapshotRow(m, SnapshotState::Completed)));
		// Block writes in flight are this host's, in its state directory.
		for (const catalog::SnapshotRow &r : writing)
			VS_TRY(ctx.catalog->putSnapshot(r));
		for (const engine::VolumeRecord &v : volumes)
			VS_TRY(ctx.catalog->putVolume(volumeRow(v)));
		return {};
	}));
	Json j = Json::object();
	j.set("Snapshots", Json::integer(int64_t(manifests.size())));
	j.set("Volumes", Json::integer(int64_t(volumes.size())));
	return ok(j);
}

} // namespace virtsnap::daemon
