// Key domains and sealed objects (see FORMAT.md, "Keys" and "Sealed objects").
#pragma once

#include <array>
#include <string>

#include "core/bytes.h"
#include "core/error.h"
#include "crypto/crypto.h"

namespace virtsnap::store {

using DomainId = std::array<uint8_t, 8>;

struct KeyDomain {
	DomainId id{};
	crypto::SecretKey encKey;
	crypto::SecretKey idKey;

	std::string idHex() const { return toHex(id); }
	static Result<KeyDomain> generate();
};

enum class ObjectType : uint8_t {
	KeyDomain = 1,
	PackIndex = 2,
	Manifest = 3,
	Record = 4,
};

// Seals `plaintext` as an object of `type` bound to `name`.
Result<Bytes> sealObject(ObjectType type, const DomainId &domain, const crypto::SecretKey &key,
			 const std::string &name, std::span<const uint8_t> plaintext);

// The domain a sealed object names, without opening it.
Result<DomainId> objectDomain(std::span<const uint8_t> sealed);

// Opens an object; any mismatch of type, name, key or content is an
// authentication failure (StoreCorrupted).
Result<Bytes> openObject(ObjectType type, const crypto::SecretKey &key, const std::string &name,
			 std::span<const uint8_t> sealed);

// The key domain file: enc key || id key, sealed with the master key.
Result<Bytes> wrapDomain(const KeyDomain &domain, const crypto::SecretKey &master,
			 const std::string &storeId);
// Fails with WrongKey when the master key does not open it.
Result<KeyDomain> unwrapDomain(std::span<const uint8_t> sealed, const crypto::SecretKey &master,
			       const std::string &storeId);

} // namespace virtsnap::store
