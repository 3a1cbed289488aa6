#include "store_targets.h"

#include <optional>

#include "access.h"
#include "admission.h"
#include "catalog/catalog.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "events/dispatcher.h"
#include "events/event.h"
#include "job_runner.h"
#include "store/backend.h"

namespace virtsnap::daemon {

namespace {

void emitPushed(Context &ctx, const engine::CopyRequest &request, const Result<store::Manifest> &made)
{
	if (!ctx.events)
		return;
	events::SnapshotNotice n;
	n.event = "copySnapshot";
	n.result = made ? "succeeded" : "failed";
	n.cause = made ? "" : made.error().toString();
	n.snapshotId = request.snapshotId;
	n.source = request.sourceSnapshotId;
	n.startTime = request.startTime;
	n.endTime = isoTimeNow();
	ctx.events->emit(events::toJson(n));
}

} // namespace

std::string withoutCredentials(std::string url)
{
	for (size_t at = url.find("://"); at != std::string::npos; at = url.find("://", at + 3)) {
		size_t host = at + 3;
		size_t end = url.find_first_of("/?&#", host);
		size_t userinfo = url.find('@', host);
		if (userinfo != std::string::npos && userinfo < end)
			url.erase(host, userinfo + 1 - host);
	}
	return url;
}

std::vector<std::string> storeTargetUrls(const Context &ctx)
{
	std::vector<std::string> urls;
	for (const StoreTarget &t : ctx.options.storeTargets)
		urls.push_back(t.url);
	return urls;
}

Result<std::unique_ptr<store::Store>> openStoreTarget(Context &ctx, const std::string &url, const std::string &field)
{
	const StoreTarget *target = findStoreTarget(ctx.options.storeTargets, url);
	std::string shown = withoutCredentials(url);
	if (!target)
		return fail(errc::kInvalidParameterValue, field + ": '" + shown + "' has no [store-target " + shown +
								  "] group with its key-file in virtsnap.conf");
	store::BackendSettings settings = backendSettings(ctx.location);
	if (!target->s3CredentialsFile.empty())
		settings.s3CredentialsFile = target->s3CredentialsFile.string();
	auto backend = store::openBackend(url, settings);
	if (!backend)
		return fail(backend.error().code, "target store " + shown + ": " + backend.error().message);
	auto opened = store::Store::open(std::move(*backend), target->keyFile);
	if (!opened)
		return fail(opened.error().code, "target store " + shown + ": " + opened.error().message);
	if ((*opened)->storeId() == ctx.store->storeId())
		return fail(errc::kInvalidParameterValue,
			    field + ": '" + shown + "' is this store: copy-snapshot without a destination copies within it");
	return opened;
}

Result<store::Manifest> pushCopy(Context &ctx, store::Store &target, engine::CopyRequest request)
{
	VS_TRY(requireCompletedIfKnown(ctx, request.sourceSnapshotId, "copied"));
	if (request.snapshotId.empty()) {
		VS_ASSIGN(request.snapshotId, newResourceId("snap-"));
	}
	if (request.startTime.empty())
		request.startTime = isoTimeNow();
	request.sourceStoreUrl = withoutCredentials(ctx.location.url);
	if (request.description.empty())
		request.description = engine::defaultCopyDescription(request.sourceSnapshotId, request.sourceStoreUrl);
	// As a copy within the store: gc waits for it, and it for a gc
	// already running; it takes a transfer slot of --max-parallel-jobs,
	// and a daemon that stops interrupts it (nothing is written then).
	std::string jobId = relatedId("job-", request.snapshotId);
	JobRunner::CancelFlag cancel = ctx.jobs->enroll(jobId);
	auto cancelled = [&] { return cancel->load() || cancelRequested(); };
	std::vector<std::string> claims = {"copy:" + request.snapshotId};
	Result<store::Manifest> made = fail(errc::kIncorrectState, "interrupted before the copy began");
	if (ctx.admission->waitClaim(claims, cancelled)) {
		std::optional<JobRunner::Slot> slot;
		if (ctx.options.background)
			slot.emplace(*ctx.jobs, cancel);
		made = engine::copySnapshot(*ctx.store, target, request, nullptr, cancelled);
		ctx.admission->release(claims);
	}
	ctx.jobs->retire(jobId);
	emitPushed(ctx, request, made);
	return made;
}

} // namespace virtsnap::daemon
