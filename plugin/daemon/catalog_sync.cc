#include "catalog_sync.h"

#include <set>

#include "catalog/catalog.h"
#include "catalog_rows.h"
#include "engine/maintenance.h"
#include "engine/resources.h"
#include "store/store.h"

namespace virtsnap::daemon {

namespace {

// A snapshot the store has and the catalog should show.
Result<void> addSnapshot(store::Store &store, catalog::Catalog &catalog, const std::string &id)
{
	auto m = store.getManifest(id);
	if (!m) {
		if (m.error().code == errc::kSnapshotNotFound)
			return {}; // deleted meanwhile
		return std::unexpected(m.error());
	}
	VS_TRY(catalog.putSnapshot(snapshotRow(*m, SnapshotState::Completed)));
	VS_ASSIGN(auto known, catalog.getVolume(m->volumeId));
	if (known)
		return {};
	VS_ASSIGN(auto volume, engine::loadVolume(store, m->volumeId));
	return volume ? catalog.putVolume(volumeRow(*volume)) : Result<void>{};
}

} // namespace

Result<void> CatalogSync::sync(store::Store &store, catalog::Catalog &catalog, bool force)
{
	std::lock_guard lock(mutex_);
	auto now = std::chrono::steady_clock::now();
	if (!force && last_ && now - *last_ < kMaxAge)
		return {};
	// The catalog first, then the store: a snapshot this host completes
	// meanwhile has its manifest written before its row says completed,
	// so it is never taken for one deleted elsewhere.
	VS_ASSIGN(catalog::Page rows, catalog.describeSnapshots({}, {}, 0, ""));
	auto listed = store.listManifestIds();
	if (!listed && !force && listed.error().code == errc::kStoreUnavailable) {
		// The catalog is this host's own record of its snapshots: an
		// outage must not hide them, least of all those it failed (their
		// StateMessage names the store). Served as it is; the store is
		// asked again after kMaxAge, so listings do not each wait out
		// the timeout. --refresh asks for the store, and fails.
		last_ = now;
		silent_ = true;
		return {};
	}
	VS_TRY(listed);
	const std::vector<std::string> &ids = *listed;
	std::set<std::string> inStore(ids.begin(), ids.end()), inCatalog;
	for (const catalog::SnapshotRow &r : rows.snapshots) {
		inCatalog.insert(r.snapshotId);
		if (r.state == SnapshotState::Completed && !inStore.count(r.snapshotId))
			VS_TRY(catalog.removeSnapshot(r.snapshotId));
	}
	for (const std::string &id : ids)
		if (!inCatalog.count(id))
			VS_TRY(addSnapshot(store, catalog, id));
	last_ = now;
	silent_ = false;
	return {};
}

bool CatalogSync::storeSilent()
{
	std::lock_guard lock(mutex_);
	return silent_;
}

Result<void> CatalogSync::learn(store::Store &store, catalog::Catalog &catalog, const std::vector<std::string> &ids)
{
	for (const std::string &id : ids) {
		VS_ASSIGN(auto row, catalog.getSnapshot(id));
		if (!row)
			VS_TRY(addSnapshot(store, catalog, id));
	}
	return {};
}

} // namespace virtsnap::daemon
