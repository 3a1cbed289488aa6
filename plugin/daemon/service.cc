#include "service.h"

#include <cstdio>

#include "access.h"
#include "catalog/catalog.h"
#include "engine/accounts.h"
#include "commands.h"
#include "engine/maintenance.h"
#include "engine/restore_journal.h"
#include "handlers.h"
#include "instant_job.h"
#include "recovery.h"
#include "core/file_util.h"
#include "store/store.h"

namespace virtsnap::daemon {

Service::Service(const StoreLocation &location, ServiceOptions options, events::Dispatcher *events)
	: drivers_(options.background, options.hypervisorTimeout), jobs_(options.maxParallelJobs)
{
	ctx_.options = options;
	ctx_.location = location;
	ctx_.events = events;
	ctx_.admission = &admission_;
	ctx_.sync = &sync_;
	ctx_.jobs = &jobs_;
	ctx_.drivers = &drivers_;
}

std::unique_ptr<Service> Service::unopened(const StoreLocation &location, ServiceOptions options)
{
	return std::unique_ptr<Service>(new Service(location, options, nullptr));
}

Result<std::unique_ptr<Service>> Service::open(const StoreLocation &location, ServiceOptions options,
					       events::Dispatcher *events)
{
	std::unique_ptr<Service> s(new Service(location, options, events));
	VS_TRY(s->openStore());
	return s;
}

Result<void> Service::openStore()
{
	VS_ASSIGN(auto backend, store::openBackend(ctx_.location.url, backendSettings(ctx_.location)));
	// The chunk map kept in the state directory: an open learns only the
	// pack indexes added since the last one.
	store::StoreOptions options;
	options.stateDir = ctx_.location.stateDir;
	VS_ASSIGN(store_, store::Store::open(std::move(backend), ctx_.location.keyFile, options));
	// A remote store's state directory is this host's alone: 0700.
	VS_TRY(makeDirs(ctx_.location.stateDir, store_->backend().local() ? 0750 : 0700));
	// A restore-instance that a crash stopped after its commit point is
	// finished before anything else can see the instance's disks.
	for (const std::string &line : engine::finishRestoreJournals(engine::restoreJournalDir(ctx_.location.stateDir)))
		std::fprintf(stderr, "virtsnap: %s\n", line.c_str());
	VS_ASSIGN(catalog_, catalog::Catalog::open(ctx_.location.stateDir / "catalog.sqlite"));
	ctx_.store = store_.get();
	ctx_.catalog = catalog_.get();
	VS_ASSIGN(ctx_.defaultAccount, engine::ensureDefaultAccount(*store_, ctx_.location.keyFile));
	if (catalog_->isEmpty()) {
		auto manifests = engine::listSnapshots(*store_);
		if (manifests && !manifests->empty()) {
			Arguments none;
			VS_TRY(rebuildCatalog(ctx_, Call{none, "", nullptr, ctx_.defaultAccount}));
		}
	}
	return {};
}

Service::~Service()
{
	// Jobs see their cancel flags, and those queued for a claim wake to
	// see them; the runner then joins every thread.
	jobs_.shutdown();
	admission_.wake();
}

Result<Reply> Service::run(const Arguments &args, const std::string &uid, const engine::ProgressFn &progress)
{
	const CommandSpec *spec = findCommand(args.command());
	if (!spec || !spec->handler)
		return fail(errc::kInvalidParameterValue, "unknown command '" + args.command() + "'");
	if (!spec->needsStore)
		return spec->handler(ctx_, Call{args, uid, progress, ""});
	if (!store_)
		VS_TRY(openStore());
	VS_ASSIGN(std::string account, actingAccount(ctx_, uid, args.get("account")));
	return spec->handler(ctx_, Call{args, uid, progress, account});
}

void Service::recoverInterruptedJobs()
{
	daemon::recoverInterruptedJobs(ctx_);
	daemon::resumeInstantRestores(ctx_);
}

} // namespace virtsnap::daemon
