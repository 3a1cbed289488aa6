#include "access.h"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cstdlib>

#include "catalog_sync.h"
#include "engine/accounts.h"
#include "engine/kms_keys.h"
#include "engine/snapshot_permissions.h"
#include "store/store.h"

namespace virtsnap::daemon {

namespace {

// The user's name and the names of every group they are in. The _r
// lookups: virtsnapd serves callers on several threads at once, and
// getpwuid's shared buffer could give one caller another's name.
bool userNames(uid_t uid, std::string *user, std::vector<std::string> *groups)
{
	std::vector<char> buf(16384);
	struct passwd pwd {};
	struct passwd *pw = nullptr;
	if (::getpwuid_r(uid, &pwd, buf.data(), buf.size(), &pw) != 0 || !pw)
		return false;
	*user = pw->pw_name;
	const gid_t primary = pw->pw_gid;
	int n = 64;
	std::vector<gid_t> gids(static_cast<size_t>(n));
	if (::getgrouplist(user->c_str(), primary, gids.data(), &n) < 0) {
		gids.resize(size_t(n));
		::getgrouplist(user->c_str(), primary, gids.data(), &n);
	}
	for (int i = 0; i < n; i++) {
		struct group grp {};
		struct group *g = nullptr;
		std::vector<char> gbuf(65536);
		if (::getgrgid_r(gids[size_t(i)], &grp, gbuf.data(), gbuf.size(), &g) == 0 && g)
			groups->push_back(g->gr_name);
	}
	return true;
}

bool names(const std::vector<std::string> &list, const std::string &name)
{
	return std::find(list.begin(), list.end(), name) != list.end();
}

// The [account] sections naming the user, those by user name first.
std::vector<std::string> accountsOfUser(const Context &ctx, uid_t uid)
{
	std::string user;
	std::vector<std::string> groups;
	std::vector<std::string> out;
	if (!userNames(uid, &user, &groups))
		return out;
	for (const AccountConfig &a : ctx.options.accounts)
		if (names(a.users, user))
			out.push_back(a.accountId);
	for (const AccountConfig &a : ctx.options.accounts)
		if (!names(a.users, user) && std::any_of(groups.begin(), groups.end(), [&](const std::string &g) {
			    return names(a.groups, g);
		    }))
			out.push_back(a.accountId);
	return out;
}

} // namespace

Result<std::string> actingAccount(const Context &ctx, const std::string &uid, const std::string &requested)
{
	if (!requested.empty() && !engine::isAccountId(requested))
		return fail(errc::kInvalidParameterValue,
			    "--account '" + requested + "' is not an account id (12 decimal digits)");
	// "": the daemon's own runs (the lifecycle policies' timer).
	if (uid == "0" || uid.empty()) {
		if (requested.empty())
			return ctx.defaultAccount;
		VS_ASSIGN(auto account, engine::getAccount(*ctx.store, requested));
		if (!account)
			return fail(errc::kInvalidParameterValue, "account " + requested + " does not exist in the store");
		return requested;
	}
	if (ctx.options.accounts.empty()) {
		if (!requested.empty() && requested != ctx.defaultAccount)
			return fail(errc::kAccessDenied, "uid " + uid + " may not act as account " + requested);
		return ctx.defaultAccount;
	}
	std::vector<std::string> mine = accountsOfUser(ctx, uid_t(std::strtoul(uid.c_str(), nullptr, 10)));
	if (mine.empty())
		return fail(errc::kAccessDenied, "uid " + uid + " is in no account (no [account] section of the config names it)");
	if (requested.empty())
		return mine.front();
	if (!names(mine, requested))
		return fail(errc::kAccessDenied, "uid " + uid + " may not act as account " + requested);
	return requested;
}

std::string ownerOf(const Context &ctx, const catalog::SnapshotRow &row)
{
	return row.ownerId.empty() || !engine::isAccountId(row.ownerId) ? ctx.defaultAccount : row.ownerId;
}

Result<bool> maySee(Context &ctx, const std::string &accountId, const catalog::SnapshotRow &row)
{
	if (ownerOf(ctx, row) == accountId)
		return true;
	if (row.state != SnapshotState::Completed)
		return false; // only completed snapshots are shared
	VS_ASSIGN(engine::SnapshotPermissions p, engine::getSnapshotPermissions(*ctx.store, row.snapshotId));
	return p.grants(accountId);
}

Result<catalog::SnapshotRow> visibleSnapshot(Context &ctx, const Call &call, const std::string &snapshotId)
{
	VS_TRY(ctx.sync->learn(*ctx.store, *ctx.catalog, {snapshotId})); // another host's snapshot
	VS_ASSIGN(auto row, ctx.catalog->getSnapshot(snapshotId));
	if (row) {
		VS_ASSIGN(bool visible, maySee(ctx, call.accountId, *row));
		if (visible)
			return *row;
	}
	return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " does not exist");
}

Result<catalog::SnapshotRow> ownedSnapshot(Context &ctx, const Call &call, const std::string &snapshotId)
{
	VS_ASSIGN(catalog::SnapshotRow row, visibleSnapshot(ctx, call, snapshotId));
	if (ownerOf(ctx, row) != call.accountId)
		return fail(errc::kAccessDenied, "snapshot " + snapshotId + " belongs to account " + ownerOf(ctx, row) +
							 ", not to " + call.accountId + ": only its owner may do that");
	return row;
}

Result<void> requireCompleted(const catalog::SnapshotRow &row, const std::string &used)
{
	if (row.state == SnapshotState::Completed)
		return {};
	return fail(errc::kIncorrectState, "snapshot " + row.snapshotId + " is " + std::string(name(row.state)) +
						   "; only a completed snapshot can be " + used);
}

Result<void> requireCompletedIfKnown(Context &ctx, const std::string &snapshotId, const std::string &used)
{
	VS_ASSIGN(auto row, ctx.catalog->getSnapshot(snapshotId));
	return row ? requireCompleted(*row, used) : Result<void>{};
}

Result<catalog::Scope> scopeOf(Context &ctx, const std::vector<std::string> &accountIds)
{
	catalog::Scope scope;
	for (const std::string &id : accountIds) {
		scope.owners.push_back(id);
		if (id == ctx.defaultAccount)
			scope.owners.push_back(""); // manifests from before accounts
	}
	// A silent store: what the host knows, the accounts' own snapshots
	// (shared ones cannot be read now anyway), without waiting out its
	// timeout once more.
	if (ctx.sync && ctx.sync->storeSilent())
		return scope;
	auto all = engine::allSnapshotPermissions(*ctx.store);
	if (!all && all.error().code == errc::kStoreUnavailable)
		return scope;
	VS_TRY(all);
	for (const auto &[snapshotId, permissions] : *all)
		if (std::any_of(accountIds.begin(), accountIds.end(),
				[&](const std::string &id) { return permissions.grants(id); }))
			scope.snapshotIds.push_back(snapshotId);
	return scope;
}

Result<void> requireSnapshotKey(Context &ctx, const Call &call, const catalog::SnapshotRow &row)
{
	if (!row.encrypted)
		return {};
	// No key named (sealed before keys had names): the store's default key.
	const std::string key = row.kmsKeyId.empty() ? ctx.store->domain().idHex() : row.kmsKeyId;
	auto used = engine::requireKmsKeyUse(*ctx.store, key, call.accountId, ctx.defaultAccount);
	if (!used && used.error().code == errc::kAccessDenied)
		return fail(errc::kAccessDenied, "snapshot " + row.snapshotId + " is encrypted with key " + key +
							 ", which account " + call.accountId +
							 " may not use (its owner may grant it: create-grant)");
	return used;
}

Result<void> requireVolumeKey(Context &ctx, const std::string &accountId, const engine::VolumeRecord &v)
{
	if (!v.encrypted || v.kmsKeyId.empty())
		return {};
	auto used = engine::requireKmsKeyUse(*ctx.store, v.kmsKeyId, accountId, ctx.defaultAccount);
	if (!used && used.error().code == errc::kAccessDenied)
		return fail(errc::kAccessDenied, "volume " + v.volumeId + " is encrypted with key " + v.kmsKeyId +
							 ", which account " + accountId +
							 " may not use (its owner may grant it: create-grant)");
	return used;
}

Result<void> refuseSharedEncrypted(Context &ctx, const Call &call, const catalog::SnapshotRow &row)
{
	if (!row.encrypted)
		return {};
	VS_TRY(requireSnapshotKey(ctx, call, row));
	if (ownerOf(ctx, row) == call.accountId)
		return {};
	return fail(errc::kAccessDenied, "snapshot " + row.snapshotId +
						 " is encrypted and not yours: copy it (copy-snapshot) and restore the copy");
}

} // namespace virtsnap::daemon
