#include "kms_keys.h"

#include <algorithm>

#include "accounts.h"
#include "core/bytes.h"
#include "crypto/crypto.h"
#include "json/json.h"
#include "store/held_manifests.h"
#include "store/store.h"

namespace virtsnap::engine {

namespace {

constexpr const char *kKmsKeyKind = "kms-keys";
constexpr const char *kKmsGrantKind = "kms-grants";
constexpr const char *kKmsDefaultKind = "kms-default-keys";

std::string kmsKeyJson(const KmsKey &k)
{
	Json j = Json::object();
	j.set("KeyId", Json::string(k.keyId));
	j.set("AccountId", Json::string(k.accountId));
	j.set("Description", Json::string(k.description));
	j.set("CreationDate", Json::integer(k.creationDate));
	j.set("KeyState", Json::string("Enabled"));
	j.set("Default", Json::boolean(k.isDefault));
	return j.dump();
}

Result<KmsKey> parseKmsKey(const std::string &id, const std::string &text)
{
	auto j = Json::parse(text);
	if (!j || j->getString("KeyId") != id)
		return fail(errc::kCorrupt, "key record " + id + " is damaged");
	KmsKey k;
	k.keyId = id;
	k.accountId = j->getString("AccountId").value_or("");
	k.description = j->getString("Description").value_or("");
	k.creationDate = j->getInt("CreationDate").value_or(0);
	k.isDefault = j->getBool("Default").value_or(false);
	return k;
}

// The store's default domain: the default account's default key, with a
// record only once a grant or a description needs one.
KmsKey storeDefaultKey(store::Store &store, const std::string &defaultAccount)
{
	KmsKey k;
	k.keyId = store.domain().idHex();
	k.accountId = defaultAccount;
	k.description = "Default key of the store";
	k.isDefault = true;
	return k;
}

Result<std::vector<KmsGrant>> grantsOf(store::Store &store, const std::string &keyId)
{
	VS_ASSIGN(auto ids, store.listRecordIds(kKmsGrantKind));
	std::vector<KmsGrant> out;
	for (const std::string &id : ids) {
		if (!id.starts_with(keyId + "-"))
			continue;
		VS_ASSIGN(auto text, store.getRecord(kKmsGrantKind, id));
		auto j = text ? Json::parse(*text) : std::nullopt;
		if (!j)
			continue; // removed meanwhile
		KmsGrant g;
		g.grantId = j->getString("GrantId").value_or("");
		g.keyId = keyId;
		g.granteeAccount = j->getString("GranteePrincipal").value_or("");
		g.creationDate = j->getInt("CreationDate").value_or(0);
		if (g.grantId.empty() || id != keyId + "-" + g.grantId || j->getString("KeyId") != keyId)
			return fail(errc::kCorrupt, "grant record " + id + " is damaged");
		out.push_back(g);
	}
	return out;
}

Result<std::optional<KmsKey>> keyRecord(store::Store &store, const std::string &keyId)
{
	VS_ASSIGN(auto text, store.getRecord(kKmsKeyKind, keyId));
	if (!text)
		return std::optional<KmsKey>();
	VS_ASSIGN(KmsKey k, parseKmsKey(keyId, *text));
	return std::optional<KmsKey>(k);
}

bool isKeyId(const std::string &id)
{
	return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

} // namespace

Result<KmsKey> getKmsKey(store::Store &store, const std::string &keyId, const std::string &defaultAccount)
{
	if (!isKeyId(keyId))
		return fail(errc::kKeyNotFound, "'" + keyId + "' is not a key id (16 lowercase hex digits)");
	VS_ASSIGN(auto record, keyRecord(store, keyId));
	KmsKey k;
	if (record)
		k = *record;
	else if (keyId == store.domain().idHex())
		k = storeDefaultKey(store, defaultAccount);
	else
		return fail(errc::kKeyNotFound, "key " + keyId + " does not exist");
	VS_ASSIGN(k.grants, grantsOf(store, keyId));
	return k;
}

Result<KmsKey> createKmsKey(store::Store &store, const std::string &accountId, const std::string &description)
{
	if (description.size() > 8192)
		return fail(errc::kInvalidParameterValue, "--description is longer than 8192 characters");
	VS_ASSIGN(const store::KeyDomain *domain, store.createDomain());
	KmsKey k;
	k.keyId = domain->idHex();
	k.accountId = accountId;
	k.description = description;
	VS_ASSIGN(k.creationDate, store::storeTime(store));
	VS_TRY(store.createRecord(kKmsKeyKind, k.keyId, kmsKeyJson(k)));
	return k;
}

Result<std::string> defaultKmsKey(store::Store &store, const std::string &accountId,
				  const std::string &defaultAccount)
{
	if (accountId == defaultAccount)
		return store.domain().idHex();
	auto pointerOf = [&]() -> Result<std::optional<std::string>> {
		VS_ASSIGN(auto text, store.getRecord(kKmsDefaultKind, accountId));
		if (!text)
			return std::optional<std::string>();
		auto j = Json::parse(*text);
		std::string id = j ? j->getString("KeyId").value_or("") : "";
		if (!isKeyId(id))
			return fail(errc::kCorrupt, "the default key record of account " + accountId + " is damaged");
		return std::optional<std::string>(id);
	};
	VS_ASSIGN(auto existing, pointerOf());
	if (existing)
		return *existing;
	VS_ASSIGN(KmsKey k, createKmsKey(store, accountId, "Default key of account " + accountId));
	k.isDefault = true;
	VS_TRY(store.putRecord(kKmsKeyKind, k.keyId, kmsKeyJson(k)));
	Json pointer = Json::object();
	pointer.set("KeyId", Json::string(k.keyId));
	auto made = store.createRecord(kKmsDefaultKind, accountId, pointer.dump());
	if (made)
		return k.keyId;
	if (made.error().code != errc::kObjectExists)
		return std::unexpected(made.error());
	// Another host made it meanwhile: theirs it is, ours is no key. Its
	// domain stays in keys/, sealing nothing.
	VS_TRY(store.removeRecord(kKmsKeyKind, k.keyId));
	VS_ASSIGN(existing, pointerOf());
	if (!existing)
		return fail(errc::kCorrupt, "the default key record of account " + accountId + " vanished");
	return *existing;
}

Result<std::string> accountDefaultKmsKey(store::Store &store, const std::string &accountId)
{
	if (accountId.empty())
		return store.domain().idHex();
	VS_ASSIGN(auto account, getAccount(store, accountId));
	if (!account || account->isDefault)
		return store.domain().idHex();
	return defaultKmsKey(store, accountId, "");
}

Result<std::vector<KmsKey>> listKmsKeys(store::Store &store, const std::string &accountId,
					const std::string &defaultAccount)
{
	VS_ASSIGN(auto ids, store.listRecordIds(kKmsKeyKind));
	const std::string storeKey = store.domain().idHex();
	if (std::find(ids.begin(), ids.end(), storeKey) == ids.end())
		ids.push_back(storeKey);
	std::sort(ids.begin(), ids.end());
	std::vector<KmsKey> out;
	for (const std::string &id : ids) {
		auto k = getKmsKey(store, id, defaultAccount);
		if (!k && k.error().code == errc::kKeyNotFound)
			continue; // removed meanwhile
		VS_TRY(k);
		bool granted = std::any_of(k->grants.begin(), k->grants.end(),
					   [&](const KmsGrant &g) { return g.granteeAccount == accountId; });
		if (k->accountId == accountId || granted)
			out.push_back(std::move(*k));
	}
	return out;
}

Result<KmsGrant> createKmsGrant(store::Store &store, const std::string &keyId, const std::string &ownerAccount,
				const std::string &granteeAccount, const std::string &defaultAccount)
{
	VS_ASSIGN(KmsKey k, getKmsKey(store, keyId, defaultAccount));
	if (k.accountId != ownerAccount)
		return fail(errc::kAccessDenied, "key " + keyId + " belongs to account " + k.accountId + ", not to " +
							 ownerAccount + ": only its owner may grant its use");
	if (!isAccountId(granteeAccount))
		return fail(errc::kInvalidParameterValue,
			    "--grantee-account '" + granteeAccount + "' is not an account id (12 decimal digits)");
	VS_ASSIGN(auto grantee, getAccount(store, granteeAccount));
	if (!grantee)
		return fail(errc::kInvalidParameterValue, "--grantee-account " + granteeAccount + ": no such account in the store");
	// As KMS: a grant that says what one already says is that one.
	for (const KmsGrant &g : k.grants)
		if (g.granteeAccount == granteeAccount)
			return g;
	uint8_t raw[32];
	VS_TRY(crypto::randomBytes(raw));
	KmsGrant g;
	g.grantId = toHex(raw);
	g.keyId = keyId;
	g.granteeAccount = granteeAccount;
	VS_ASSIGN(g.creationDate, store::storeTime(store));
	Json j = Json::object();
	j.set("GrantId", Json::string(g.grantId));
	j.set("KeyId", Json::string(keyId));
	j.set("GranteePrincipal", Json::string(granteeAccount));
	j.set("CreationDate", Json::integer(g.creationDate));
	VS_TRY(store.createRecord(kKmsGrantKind, keyId + "-" + g.grantId, j.dump()));
	return g;
}

Result<bool> mayUseKmsKey(store::Store &store, const std::string &keyId, const std::string &accountId,
			  const std::string &defaultAccount)
{
	VS_ASSIGN(KmsKey k, getKmsKey(store, keyId, defaultAccount));
	if (k.accountId == accountId)
		return true;
	return std::any_of(k.grants.begin(), k.grants.end(),
			   [&](const KmsGrant &g) { return g.granteeAccount == accountId; });
}

Result<void> requireKmsKeyUse(store::Store &store, const std::string &keyId, const std::string &accountId,
			      const std::string &defaultAccount)
{
	VS_ASSIGN(bool may, mayUseKmsKey(store, keyId, accountId, defaultAccount));
	if (!may)
		return fail(errc::kAccessDenied, "account " + accountId + " may not use key " + keyId +
							 " (neither its owner nor granted it: create-grant)");
	return {};
}

} // namespace virtsnap::engine
