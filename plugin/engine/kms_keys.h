// KMS-style keys (FORMAT.md, "Keys"): a key is a key domain of the store,
// its KeyId the domain's 16-hex id, wrapped by the store master key like
// the default domain. Who may use which key is virtsnapd's to enforce, as
// AWS KMS enforces its key policies: a key belongs to one account, and a
// grant lets another account read data sealed under it. Each key has a
// record (records/kms-keys/<id>); each grant one of its own
// (records/kms-grants/<key>-<grant>), so that two grants made at once on
// one key never overwrite each other.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::store {
class Store;
}

namespace virtsnap::engine {

struct KmsGrant {
	std::string grantId; // 64 hex digits, as KMS's
	std::string keyId;
	std::string granteeAccount;
	int64_t creationDate = 0; // unix seconds, the store's clock
};

struct KmsKey {
	std::string keyId;     // the key domain's 16 hex digits
	std::string accountId; // the owner
	std::string description;
	int64_t creationDate = 0;
	bool isDefault = false; // an account's default key (KeyManager AWS in KMS)
	std::vector<KmsGrant> grants;
};

// The key `keyId`, with its grants. The store's default domain is the
// default account's default key even without a record. NotFoundException
// when the store has no such key.
Result<KmsKey> getKmsKey(store::Store &store, const std::string &keyId, const std::string &defaultAccount);

// A new key of `accountId`: a new key domain, then its record.
Result<KmsKey> createKmsKey(store::Store &store, const std::string &accountId, const std::string &description);

// `accountId`'s default key: the store's default domain for the default
// account; for another, made on first need (one winner among racing
// hosts, through createRecord of records/kms-default-keys/<account>).
Result<std::string> defaultKmsKey(store::Store &store, const std::string &accountId,
				  const std::string &defaultAccount);

// The key a volume of `accountId` that became encrypted (a LUKS image)
// gets: that account's default key. "" or the default account: the
// store's default domain.
Result<std::string> accountDefaultKmsKey(store::Store &store, const std::string &accountId);

// The keys `accountId` owns and the keys granted to it, by KeyId.
Result<std::vector<KmsKey>> listKmsKeys(store::Store &store, const std::string &accountId,
					const std::string &defaultAccount);

// A grant on `keyId` to `granteeAccount` (an account of the store); only
// the key's owner makes one.
Result<KmsGrant> createKmsGrant(store::Store &store, const std::string &keyId, const std::string &ownerAccount,
				const std::string &granteeAccount, const std::string &defaultAccount);

// Whether `accountId` may use `keyId` (owner or grantee): AccessDenied
// naming the key when not, NotFoundException when there is no such key.
Result<void> requireKmsKeyUse(store::Store &store, const std::string &keyId, const std::string &accountId,
			      const std::string &defaultAccount);
Result<bool> mayUseKmsKey(store::Store &store, const std::string &keyId, const std::string &accountId,
			  const std::string &defaultAccount);

} // namespace virtsnap::engine
