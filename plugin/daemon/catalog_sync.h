// Each host's catalog is its own index of a store that other hosts may
// write to as well (a shared RADOS pool or S3 bucket). The store's
// manifests are the truth: a sync adds the snapshots (and volumes) other
// hosts committed and drops the ones they deleted. A listing is at most
// kMaxAge stale; describe-snapshots --refresh syncs at once, and an id the
// catalog does not know is looked up in the store before it is called
// unknown. While the store cannot be reached, a listing is the catalog as
// it is (this host's own snapshots, with their states) and --refresh fails.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::catalog {
class Catalog;
}
namespace virtsnap::store {
class Store;
}

namespace virtsnap::daemon {

class CatalogSync
{
public:
	static constexpr std::chrono::seconds kMaxAge{10};

	// Syncs when the last sync is older than kMaxAge, or now if `force`.
	// A store that does not answer (StoreUnavailable) fails only a forced
	// sync; otherwise the catalog stands and the next try is kMaxAge on.
	Result<void> sync(store::Store &store, catalog::Catalog &catalog, bool force = false);
	// Rows for the ids the catalog lacks and the store has.
	Result<void> learn(store::Store &store, catalog::Catalog &catalog, const std::vector<std::string> &ids);

	// Whether the last sync found the store silent (until one that does
	// not): a listing then asks it nothing more, as the sync did not.
	bool storeSilent();

private:
	std::mutex mutex_;
	std::optional<std::chrono::steady_clock::time_point> last_;
	bool silent_ = false;
};

} // namespace virtsnap::daemon
