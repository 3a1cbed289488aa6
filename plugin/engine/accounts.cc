#include "accounts.h"

#include <algorithm>
#include <chrono>

#include "core/bytes.h"
#include "crypto/crypto.h"
#include "json/json.h"
#include "store/store.h"

namespace virtsnap::engine {

namespace {

constexpr const char *kAccountKind = "accounts";
// Names the default account; not an account id, so listings skip it.
constexpr const char *kDefaultRecord = "default";

std::string keyCheckOf(const crypto::SecretKey &key)
{
	std::string label = "virtsnap account key check v1";
	crypto::Digest d = crypto::Hmac(key).digest(std::span((const uint8_t *)label.data(), label.size()));
	return toHex(std::span(d.data(), 8));
}

std::string accountJson(const Account &a)
{
	Json j = Json::object();
	j.set("AccountId", Json::string(a.accountId));
	j.set("CreateTime", Json::integer(a.createTime));
	j.set("KeyCheck", Json::string(a.keyCheck));
	return j.dump();
}

Result<Account> parseAccount(const std::string &id, const std::string &text)
{
	auto j = Json::parse(text);
	if (!j || j->getString("AccountId") != id)
		return fail(errc::kCorrupt, "account record " + id + " is damaged");
	Account a;
	a.accountId = id;
	a.createTime = j->getInt("CreateTime").value_or(0);
	a.keyCheck = j->getString("KeyCheck").value_or("");
	return a;
}

Result<std::string> newAccountId()
{
	uint8_t bytes[8];
	VS_TRY(crypto::randomBytes(bytes));
	uint64_t n = 0;
	for (uint8_t b : bytes)
		n = (n << 8) | b;
	// 12 digits without a leading zero, so no tool drops it.
	return std::to_string(100000000000ull + n % 900000000000ull);
}

Result<int64_t> storeNow(store::Store &store)
{
	VS_ASSIGN(auto now, store.backend().now());
	return int64_t(std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
}

} // namespace

bool isAccountId(const std::string &id)
{
	return id.size() == 12 && std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Result<std::optional<std::string>> defaultAccountId(store::Store &store)
{
	VS_ASSIGN(auto text, store.getRecord(kAccountKind, kDefaultRecord));
	if (!text)
		return std::optional<std::string>();
	auto j = Json::parse(*text);
	std::string id = j ? j->getString("AccountId").value_or("") : "";
	if (!isAccountId(id))
		return fail(errc::kCorrupt, "the store's default account record is damaged");
	return std::optional<std::string>(id);
}

Result<std::optional<Account>> getAccount(store::Store &store, const std::string &accountId)
{
	if (!isAccountId(accountId))
		return std::optional<Account>();
	VS_ASSIGN(auto text, store.getRecord(kAccountKind, accountId));
	if (!text)
		return std::optional<Account>();
	VS_ASSIGN(Account a, parseAccount(accountId, *text));
	VS_ASSIGN(auto def, defaultAccountId(store));
	a.isDefault = def == accountId;
	return std::optional<Account>(a);
}

Result<std::vector<Account>> listAccounts(store::Store &store)
{
	VS_ASSIGN(auto ids, store.listRecordIds(kAccountKind));
	VS_ASSIGN(auto def, defaultAccountId(store));
	std::vector<Account> out;
	for (const std::string &id : ids) {
		if (!isAccountId(id))
			continue;
		VS_ASSIGN(auto text, store.getRecord(kAccountKind, id));
		if (!text)
			continue; // removed meanwhile
		VS_ASSIGN(Account a, parseAccount(id, *text));
		a.isDefault = def == id;
		out.push_back(a);
	}
	std::stable_sort(out.begin(), out.end(), [](const Account &a, const Account &b) {
		return a.isDefault != b.isDefault ? a.isDefault : a.accountId < b.accountId;
	});
	return out;
}

Result<std::string> ensureDefaultAccount(store::Store &store, const std::filesystem::path &storeKeyFile)
{
	VS_ASSIGN(auto existing, defaultAccountId(store));
	if (existing)
		return *existing;
	VS_ASSIGN(crypto::SecretKey key, crypto::loadKeyFile(storeKeyFile));
	Account a;
	VS_ASSIGN(a.accountId, newAccountId());
	VS_ASSIGN(a.createTime, storeNow(store));
	a.keyCheck = keyCheckOf(key);
	VS_TRY(store.createRecord(kAccountKind, a.accountId, accountJson(a)));
	Json pointer = Json::object();
	pointer.set("AccountId", Json::string(a.accountId));
	auto made = store.createRecord(kAccountKind, kDefaultRecord, pointer.dump());
	if (made)
		return a.accountId;
	if (made.error().code != errc::kObjectExists)
		return std::unexpected(made.error());
	// Another host made the default meanwhile: theirs it is.
	VS_TRY(store.removeRecord(kAccountKind, a.accountId));
	VS_ASSIGN(existing, defaultAccountId(store));
	if (!existing)
		return fail(errc::kCorrupt, "the store's default account record vanished");
	return *existing;
}

Result<AccountCreated> createAccount(store::Store &store, const std::string &accountId,
				     const std::filesystem::path &keyFile)
{
	AccountCreated out;
	Account &a = out.account;
	a.accountId = accountId;
	if (a.accountId.empty()) {
		VS_ASSIGN(a.accountId, newAccountId());
	} else if (!isAccountId(a.accountId)) {
		return fail(errc::kInvalidParameterValue,
			    "--account-id '" + a.accountId + "' is not an account id (12 decimal digits)");
	}
	VS_ASSIGN(auto taken, getAccount(store, a.accountId));
	if (taken)
		return fail(errc::kInvalidParameterValue, "account " + a.accountId + " already exists");
	std::error_code ec;
	crypto::SecretKey key;
	if (!std::filesystem::exists(keyFile, ec)) {
		VS_ASSIGN(key, crypto::SecretKey::random());
		VS_TRY(crypto::writeKeyFile(keyFile, key));
		out.keyCreated = true;
	} else {
		VS_ASSIGN(key, crypto::loadKeyFile(keyFile));
	}
	VS_ASSIGN(a.createTime, storeNow(store));
	a.keyCheck = keyCheckOf(key);
	auto made = store.createRecord(kAccountKind, a.accountId, accountJson(a));
	if (!made && made.error().code == errc::kObjectExists)
		return fail(errc::kInvalidParameterValue, "account " + a.accountId + " already exists");
	VS_TRY(made);
	return out;
}

} // namespace virtsnap::engine
