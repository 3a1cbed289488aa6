// copy-snapshot: parse, answer a retried client token, find the source (in
// this store, or in the store --source-store names, opened with the key
// the caller can read), then admit and run the copy (copy_job.h). With
// --destination-store the copy goes out of this store instead, into a
// target of the config file (store_targets.h), and the answer waits for it.
#include <string>

#include "access.h"
#include "catalog/catalog.h"
#include "copy_job.h"
#include "engine/block_writes.h"
#include "engine/kms_keys.h"
#include "handlers.h"
#include "requests.h"
#include "store/backend.h"
#include "store_targets.h"

namespace virtsnap::daemon {

namespace {

// The store --source-store names, opened with --source-key-file, which is
// read as the caller: through virtsnapd (root), a caller uses only a key
// they could read themselves.
Result<std::unique_ptr<store::Store>> openSourceStore(Context &ctx, const CopySnapshotRequest &req,
						      const std::string &ownerId)
{
	VS_ASSIGN(UniqueFd key, openAsCaller("--source-key-file", req.sourceKeyFile, ownerId));
	std::string shown = withoutCredentials(req.sourceStore);
	auto backend = store::openBackend(req.sourceStore, backendSettings(ctx.location));
	if (!backend)
		return fail(backend.error().code, "source store " + shown + ": " + backend.error().message);
	std::string keyPath = "/proc/self/fd/" + std::to_string(key.get());
	auto opened = store::Store::open(std::move(*backend), keyPath);
	if (!opened) {
		std::string message = opened.error().message;
		for (size_t at = message.find(keyPath); at != std::string::npos; at = message.find(keyPath))
			message.replace(at, keyPath.size(), req.sourceKeyFile);
		return fail(opened.error().code, "source store " + shown + ": " + message);
	}
	return opened;
}

// The copy's key (engine::copyKmsKeyId seals under it): --kms-key-id, which
// the account must be able to use; else the source's key when the account
// owns it; else the account's default key, as EBS does for a copy of a
// key shared with it. "" for a copy that is not encrypted.
Result<std::string> copyKeyOf(Context &ctx, const Call &call, const CopySnapshotRequest &req,
			      const store::Manifest &source, bool sameStore)
{
	bool encrypted = source.encrypted || req.encrypted;
	if (!encrypted && !req.kmsKeyId.empty())
		return fail(errc::kInvalidParameterValue, "--kms-key-id needs --encrypted: " + req.sourceSnapshotId +
								  " is not encrypted");
	if (!encrypted)
		return std::string();
	if (!req.kmsKeyId.empty()) {
		VS_TRY(engine::requireKmsKeyUse(*ctx.store, req.kmsKeyId, call.accountId, ctx.defaultAccount));
		return req.kmsKeyId;
	}
	if (sameStore && source.encrypted && !source.kmsKeyId.empty()) {
		VS_ASSIGN(engine::KmsKey key, engine::getKmsKey(*ctx.store, source.kmsKeyId, ctx.defaultAccount));
		if (key.accountId == call.accountId)
			return source.kmsKeyId;
	}
	return engine::defaultKmsKey(*ctx.store, call.accountId, ctx.defaultAccount);
}

// --destination-store: the copy is made before the answer, which names
// both sides. This store's catalog gets no row: the copy is the target's,
// and belongs to the target's default account (accounts are a store's).
Result<Reply> pushToDestination(Context &ctx, const CopySnapshotRequest &req, const Call &call)
{
	const std::string &ownerId = call.uid;
	VS_ASSIGN(catalog::SnapshotRow row, visibleSnapshot(ctx, call, req.sourceSnapshotId));
	VS_TRY(requireCompletedIfKnown(ctx, req.sourceSnapshotId, "copied"));
	VS_TRY(requireSnapshotKey(ctx, call, row));
	VS_ASSIGN(auto target, openStoreTarget(ctx, req.destinationStore, "--destination-store"));
	VS_TRY(engine::copySourceOf(*ctx.store, *target, req.sourceSnapshotId));
	engine::CopyRequest copy;
	copy.sourceSnapshotId = req.sourceSnapshotId;
	copy.description = req.description;
	copy.tags = req.tags;
	copy.ownerId = ownerId;
	copy.encrypted = req.encrypted; // under the target's default key
	VS_ASSIGN(store::Manifest made, pushCopy(ctx, *target, std::move(copy)));
	Json doc = Json::object();
	doc.set("SourceSnapshotId", Json::string(req.sourceSnapshotId)).set("SnapshotId", Json::string(made.snapshotId));
	doc.set("DestinationStore", Json::string(withoutCredentials(req.destinationStore)));
	doc.set("State", Json::string("completed")).set("StartTime", Json::string(made.startTime));
	doc.set("BytesAdded", Json::integer(int64_t(made.stats.bytesAdded)));
	doc.set("BytesTransferred", Json::integer(int64_t(made.stats.bytesTransferred)));
	return ok(doc);
}

} // namespace

Result<Reply> startCopy(Context &ctx, CopySnapshotRequest req, const Call &call)
{
	const std::string &ownerId = call.uid;
	AdmittedCopy a;
	if (req.sourceStore.empty()) {
		// Another account's snapshot, unless shared with this one, does
		// not exist for it (access.h).
		VS_ASSIGN(catalog::SnapshotRow row, visibleSnapshot(ctx, call, req.sourceSnapshotId));
		VS_TRY(requireCompletedIfKnown(ctx, req.sourceSnapshotId, "copied"));
		// A shared encrypted snapshot is copied only with a grant on
		// its key (or by its key's owner).
		VS_TRY(requireSnapshotKey(ctx, call, row));
	} else {
		VS_ASSIGN(a.otherSource, openSourceStore(ctx, req, ownerId));
	}
	store::Store &source = a.otherSource ? *a.otherSource : *ctx.store;
	auto found = engine::copySourceOf(source, *ctx.store, req.sourceSnapshotId);
	if (!found && a.otherSource && found.error().code == errc::kSnapshotNotFound)
		return fail(errc::kSnapshotNotFound, "snapshot " + req.sourceSnapshotId + " does not exist in " +
							     withoutCredentials(req.sourceStore) +
							     " (or is not completed there)");
	if (!found)
		return std::unexpected(found.error());
	a.sourceManifest = std::move(*found);
	a.copy.sourceSnapshotId = req.sourceSnapshotId;
	a.copy.sourceStoreUrl = a.otherSource ? withoutCredentials(req.sourceStore) : "";
	a.copy.description = req.description.empty()
				     ? engine::defaultCopyDescription(req.sourceSnapshotId, a.copy.sourceStoreUrl)
				     : req.description;
	a.copy.tags = req.tags;
	a.copy.ownerId = ownerId;
	// The copy is the copying account's, and shares nothing: permissions
	// are records of the source's id, never copied.
	a.copy.accountId = call.accountId;
	a.copy.encrypted = req.encrypted;
	VS_ASSIGN(a.copy.kmsKeyId, copyKeyOf(ctx, call, req, a.sourceManifest, !a.otherSource));
	// A copy's volume is EBS's vol-ffffffff (ours, kDirectVolumeId): its
	// pending limit is how many copies (and block writes) may be pending.
	a.volumes = {engine::kDirectVolumeId};
	a.request = std::move(req);
	return CopyJob::start(ctx, std::move(a), call.progress);
}

Result<Reply> copySnapshot(Context &ctx, const Call &call)
{
	VS_ASSIGN(CopySnapshotRequest req, parseCopySnapshot(call.args));
	// The root daemon would open the store URL a caller names with its own
	// settings: a caller's ceph.conf (librados then writes logs and
	// sockets where it says), or the host's S3 credentials sent to the
	// caller's endpoint. Another store's copies are root's, or in process.
	if (!req.sourceStore.empty() || !req.destinationStore.empty())
		VS_TRY(requireRoot(call));
	if (!req.destinationStore.empty())
		return pushToDestination(ctx, req, call);
	VS_ASSIGN(auto seen, earlierRequest(ctx, req.clientToken, req.requestHash));
	if (seen) {
		// As first answered: the copy's id.
		auto ids = Json::parse(seen->response);
		Json doc = Json::object();
		doc.set("SnapshotId", Json::string(ids && ids->size() ? ids->at(0).asString() : ""));
		return ok(doc);
	}
	return startCopy(ctx, std::move(req), call);
}

} // namespace virtsnap::daemon
