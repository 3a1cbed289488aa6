// What the libvirt hook hands virtsnapd (hooks/): one event of a domain.
// Answers at once; anything that needs libvirt runs on a job thread, since
// libvirt waits for the hook that is calling us.
#include <cstdio>

#include "admission.h"
#include "catalog/catalog.h"
#include "engine/snapshot_engine.h"
#include "handlers.h"
#include "hypervisor/target.h"
#include "job_runner.h"

namespace virtsnap::daemon {

namespace {

// Redefines what libvirt lost of a domain's checkpoints once it has started.
void reconcileLater(Context &ctx, const std::string &uuid)
{
	std::string jobId = "reconcile-" + uuid;
	if (ctx.jobs->enrolled(jobId))
		return; // one is on its way
	ctx.jobs->enroll(jobId);
	auto work = [&ctx, uuid, jobId] {
		auto driver = hypervisor::connectDriver({"", ctx.options.libvirtUri, uuid}, {}, ctx.options.hypervisorTimeout);
		if (driver) {
			auto notes = engine::reconcileInstance(*ctx.store, **driver);
			if (!notes)
				std::fprintf(stderr, "virtsnapd: reconcile of domain %s: %s\n", uuid.c_str(),
					     notes.error().message.c_str());
			else
				for (const std::string &n : *notes)
					std::fprintf(stderr, "virtsnapd: domain %s: %s\n", uuid.c_str(), n.c_str());
		}
		ctx.jobs->retire(jobId);
	};
	ctx.jobs->start(work, [&ctx, jobId] { ctx.jobs->retire(jobId); });
}

} // namespace

Result<Reply> libvirtHook(Context &ctx, const Call &call)
{
	const Arguments &args = call.args;
	std::string domain = args.get("domain"), uuid = args.get("uuid");
	std::string op = args.get("operation"), sub = args.get("sub-operation");
	if (uuid.empty())
		return fail(errc::kMissingParameter, "the hook gave no domain UUID for '" + domain + "'");
	const std::string key = "uuid:" + uuid;
	Json doc = Json::object();
	doc.set("Domain", Json::string(domain));
	doc.set("Event", Json::string(op + " " + sub));

	if (op == "migrate" && sub == "begin") {
		if (ctx.admission->capturing(key))
			return fail(errc::kIncorrectState, "domain '" + domain +
								   "' has a snapshot in progress; migrate it once "
								   "the snapshot completes (virtsnap wait snapshot-completed)");
	} else if (op == "prepare" && sub == "begin") {
		if (ctx.admission->restoring(key))
			return fail(errc::kIncorrectState, "virtsnap restore-instance is writing the disks of domain '" +
								   domain + "'; start it once the restore ends");
	} else if ((op == "stopped" || op == "release") && sub == "end") {
		std::string reason = "domain '" + domain + "' stopped during the snapshot (libvirt: " + op + ")";
		int cancelled = ctx.jobs->cancelInstance(key, reason);
		// Queued jobs wait for a claim: wake them to see the cancel.
		ctx.admission->wake();
		(void)ctx.catalog->markBitmapsSuspect(key); // advisory: the next snapshot re-examines anyway
		doc.set("CancelledJobs", Json::integer(cancelled));
	} else if ((op == "started" || op == "reconnect") && sub == "begin") {
		reconcileLater(ctx, uuid);
	}
	return ok(doc);
}

} // namespace virtsnap::daemon
