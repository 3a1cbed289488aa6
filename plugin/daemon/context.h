// What a command handler works with: the store and its catalog, the
// daemon's admission and jobs, the drivers, events, and the request. The
// Service owns all of it; a Context only borrows.
#pragma once

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "core/arguments.h"
#include "core/config.h"
#include "engine/snapshot_engine.h"
#include "json/json.h"
#include "store/backend.h"

namespace virtsnap::catalog {
class Catalog;
}
namespace virtsnap::events {
class Dispatcher;
}
namespace virtsnap::store {
class Store;
} // namespace virtsnap::store

namespace virtsnap::daemon {

class Admission;
class CatalogSync;
class DriverCache;
class JobRunner;

struct ServiceOptions {
	bool background = false;      // jobs on threads (the daemon), or inline
	unsigned maxParallelJobs = 2; // transfers at once; more wait, pending
	std::string libvirtUri = "qemu:///system"; // --connect's default
	std::chrono::milliseconds hypervisorTimeout = hypervisor::kDefaultMonitorTimeout; // [hypervisor] timeout
	std::vector<AccountConfig> accounts; // [account ID] sections: which users act as which account
	// Where copies may be pushed, with their keys ([store-target URL]):
	// store_targets.h.
	std::vector<StoreTarget> storeTargets;
	std::chrono::milliseconds luksIterTime{2000}; // [restore] luks-iter-time: new LUKS images' key derivation
};

// Which store, with which key, and where this host keeps its state for it
// (the catalog): core/config.h's stateDirFor().
struct StoreLocation {
	std::string url; // a directory, or a store URL (store/backend_url.h)
	std::filesystem::path keyFile;
	std::filesystem::path stateDir;
	std::filesystem::path s3CredentialsFile;
	std::chrono::seconds timeout{30}; // of each store request ([store] timeout)
};

// The CLI and virtsnapd find their store and configure their service
// alike: --store, --key-file and --state-dir, else the config file.
StoreLocation storeLocationFrom(const Arguments &args, const Config &config);
// Everything but whether jobs run on threads and how many at once, which
// only virtsnapd sets.
ServiceOptions serviceOptionsFrom(const Config &config);

inline store::BackendSettings backendSettings(const StoreLocation &location)
{
	store::BackendSettings s;
	s.s3CredentialsFile = location.s3CredentialsFile.string();
	s.timeout = location.timeout;
	return s;
}

// What a command prints, and whether it failed anyway (a set in error
// prints its snapshots and exits 1).
struct Reply {
	Json doc;
	std::optional<Error> failure;
};

inline Reply ok(Json doc)
{
	return Reply{std::move(doc), std::nullopt};
}

// One command as asked.
struct Call {
	const Arguments &args;
	std::string uid;             // the caller's uid, as text (SO_PEERCRED, or getuid in process)
	engine::ProgressFn progress; // in-process runs draw a progress bar
	std::string accountId;       // the account the caller acts as (access.h); empty for init
};

// Commands that guard every user's snapshots against deletion (snapshot
// locks): through virtsnapd, root's alone. A user who runs virtsnap in
// process holds the store's key anyway. (Recycle Bin rules are each
// account's own: engine/recycle_bin.h.)
inline Result<void> requireRoot(const Call &call)
{
	if (::geteuid() == 0 && call.uid != "0")
		return fail(errc::kAccessDenied, call.args.command() + " through virtsnapd is for root");
	return {};
}

struct Context {
	ServiceOptions options;
	StoreLocation location;
	store::Store *store = nullptr;       // null for commands that make one (init)
	catalog::Catalog *catalog = nullptr; // likewise
	CatalogSync *sync = nullptr;
	events::Dispatcher *events = nullptr; // null: nothing is emitted (the CLI)
	Admission *admission = nullptr;
	JobRunner *jobs = nullptr;
	DriverCache *drivers = nullptr;
	std::string defaultAccount; // the store's (engine/accounts.h), once it is open
};

} // namespace virtsnap::daemon
