// create-account and describe-accounts (engine/accounts.h): the store's
// accounts, and which of this host's users act as each (the config file).
#include "core/ids.h"
#include "ec2_output.h"
#include "engine/accounts.h"
#include "handlers.h"

namespace virtsnap::daemon {

namespace {

Json nameList(const std::vector<std::string> &names)
{
	Json list = Json::array();
	for (const std::string &n : names)
		list.append(Json::string(n));
	return list;
}

Json accountJson(const Context &ctx, const engine::Account &a)
{
	Json j = Json::object();
	j.set("AccountId", Json::string(a.accountId));
	j.set("Default", Json::boolean(a.isDefault));
	j.set("CreateTime", timeJson(a.createTime));
	std::string keyFile = a.isDefault ? ctx.location.keyFile.string() : "";
	std::vector<std::string> users, groups;
	for (const AccountConfig &c : ctx.options.accounts)
		if (c.accountId == a.accountId) {
			keyFile = c.keyFile.string();
			users = c.users;
			groups = c.groups;
		}
	if (!keyFile.empty())
		j.set("KeyFile", Json::string(keyFile));
	j.set("Users", nameList(users));
	j.set("Groups", nameList(groups));
	return j;
}

} // namespace

Result<Reply> createAccount(Context &ctx, const Call &call)
{
	if (call.uid != "0")
		return fail(errc::kAccessDenied, "create-account is for root");
	const std::string keyFile = call.args.get("account-key-file");
	if (keyFile.empty())
		return fail(errc::kMissingParameter, "--account-key-file is required");
	if (keyFile[0] != '/')
		return fail(errc::kInvalidParameterValue, "--account-key-file '" + keyFile + "' is not an absolute path");
	VS_ASSIGN(engine::AccountCreated created,
		  engine::createAccount(*ctx.store, call.args.get("account-id"), keyFile));
	Json j = accountJson(ctx, created.account);
	j.set("KeyFile", Json::string(keyFile));
	j.set("KeyCreated", Json::boolean(created.keyCreated));
	return ok(j);
}

Result<Reply> describeAccounts(Context &ctx, const Call &)
{
	VS_ASSIGN(auto accounts, engine::listAccounts(*ctx.store));
	Json list = Json::array();
	for (const engine::Account &a : accounts)
		list.append(accountJson(ctx, a));
	Json j = Json::object();
	j.set("Accounts", list);
	return ok(j);
}

} // namespace virtsnap::daemon
