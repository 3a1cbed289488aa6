// Accounts: who owns a snapshot, as EC2's OwnerId. An account is a store
// record (records/accounts/<id>), so every host sharing the store knows the
// same ones; which local users act as which account is each host's config
// ([account ID] sections, core/config.h). An account has a master key file
// of its own (0600), of which the record keeps only a check value: today
// every snapshot is sealed under the store's shared key domain (an
// unencrypted volume's snapshots are, as EBS has them); per-account keys
// (create-key) will be wrapped by it. The store's default account, the one
// `init` creates, uses the store's key file and owns every snapshot whose
// manifest names no account (written before accounts existed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::store {
class Store;
}

namespace virtsnap::engine {

struct Account {
	std::string accountId; // 12 decimal digits
	int64_t createTime = 0; // unix seconds, the store's clock
	std::string keyCheck;   // 16 hex digits of HMAC(key, label): tells a wrong key file
	bool isDefault = false;
};

// 12 decimal digits, as EC2's account ids.
bool isAccountId(const std::string &id);

// Every account of the store, the default one first.
Result<std::vector<Account>> listAccounts(store::Store &store);
Result<std::optional<Account>> getAccount(store::Store &store, const std::string &accountId);
// The default account's id; none in a store made before accounts, until
// ensureDefaultAccount makes it.
Result<std::optional<std::string>> defaultAccountId(store::Store &store);

// The default account's id. A store made before accounts has none: the
// first host to ask creates it (one winner among racing hosts), with the
// store's key file as its key.
Result<std::string> ensureDefaultAccount(store::Store &store, const std::filesystem::path &storeKeyFile);

struct AccountCreated {
	Account account;
	bool keyCreated = false;
};
// A new account with `accountId` (random when empty) and the key in
// `keyFile`, written (0600) when absent. InvalidParameterValue for a
// malformed or taken id; KeyFileError for a key file that is not one.
Result<AccountCreated> createAccount(store::Store &store, const std::string &accountId,
				     const std::filesystem::path &keyFile);

} // namespace virtsnap::engine
