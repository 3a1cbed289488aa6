// create-key, describe-keys and create-grant (engine/kms_keys.h), in KMS's
// shapes: a key is a key domain of the store, owned by the acting account;
// virtsnapd decides who may use it, as KMS's key policies do.
#include <algorithm>

#include "ec2_output.h"
#include "engine/kms_keys.h"
#include "handlers.h"
#include "store/store.h"

namespace virtsnap::daemon {

namespace {

// KMS's KeyMetadata; the grants only for the key's owner, who made them.
Json keyMetadataJson(const engine::KmsKey &k, const std::string &accountId)
{
	Json j = Json::object();
	j.set("KeyId", Json::string(k.keyId));
	j.set("AWSAccountId", Json::string(k.accountId));
	j.set("Description", Json::string(k.description));
	j.set("CreationDate", timeJson(k.creationDate));
	j.set("Enabled", Json::boolean(true));
	j.set("KeyState", Json::string("Enabled"));
	j.set("KeyUsage", Json::string("ENCRYPT_DECRYPT"));
	// KMS: AWS manages an account's default (aws/ebs) key.
	j.set("KeyManager", Json::string(k.isDefault ? "AWS" : "CUSTOMER"));
	if (k.accountId != accountId)
		return j;
	Json grants = Json::array();
	for (const engine::KmsGrant &g : k.grants) {
		Json gj = Json::object();
		gj.set("GrantId", Json::string(g.grantId));
		gj.set("GranteePrincipal", Json::string(g.granteeAccount));
		gj.set("CreationDate", timeJson(g.creationDate));
		grants.append(gj);
	}
	j.set("Grants", grants);
	return j;
}

} // namespace

Result<Reply> createKey(Context &ctx, const Call &call)
{
	VS_ASSIGN(engine::KmsKey k, engine::createKmsKey(*ctx.store, call.accountId, call.args.get("description")));
	Json j = Json::object();
	j.set("KeyMetadata", keyMetadataJson(k, call.accountId));
	return ok(j);
}

Result<Reply> describeKeys(Context &ctx, const Call &call)
{
	std::vector<engine::KmsKey> keys;
	if (call.args.has("key-id")) {
		// Named keys: one the account may not use does not exist for it.
		for (const std::string &id : call.args.all("key-id")) {
			VS_ASSIGN(engine::KmsKey k, engine::getKmsKey(*ctx.store, id, ctx.defaultAccount));
			VS_ASSIGN(bool may, engine::mayUseKmsKey(*ctx.store, id, call.accountId, ctx.defaultAccount));
			if (!may)
				return fail(errc::kKeyNotFound, "key " + id + " does not exist");
			keys.push_back(std::move(k));
		}
	} else {
		// The account's default key exists once it is asked for, as
		// aws/ebs does.
		VS_TRY(engine::defaultKmsKey(*ctx.store, call.accountId, ctx.defaultAccount));
		VS_ASSIGN(keys, engine::listKmsKeys(*ctx.store, call.accountId, ctx.defaultAccount));
	}
	Json list = Json::array();
	for (const engine::KmsKey &k : keys)
		list.append(keyMetadataJson(k, call.accountId));
	Json j = Json::object();
	j.set("Keys", list);
	return ok(j);
}

Result<Reply> createGrant(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string keyId, call.args.require("key-id"));
	VS_ASSIGN(std::string grantee, call.args.require("grantee-account"));
	VS_ASSIGN(engine::KmsKey k, engine::getKmsKey(*ctx.store, keyId, ctx.defaultAccount));
	// Another account's key, not granted to this one, does not exist
	// for it; granted, it may use it but not pass it on.
	VS_ASSIGN(bool may, engine::mayUseKmsKey(*ctx.store, keyId, call.accountId, ctx.defaultAccount));
	if (!may)
		return fail(errc::kKeyNotFound, "key " + keyId + " does not exist");
	VS_ASSIGN(engine::KmsGrant g,
		  engine::createKmsGrant(*ctx.store, k.keyId, call.accountId, grantee, ctx.defaultAccount));
	Json j = Json::object();
	j.set("GrantId", Json::string(g.grantId));
	j.set("KeyId", Json::string(g.keyId));
	j.set("GranteePrincipal", Json::string(g.granteeAccount));
	return ok(j);
}

} // namespace virtsnap::daemon
