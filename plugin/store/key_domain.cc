#include "key_domain.h"

#include <cstring>

namespace virtsnap::store {

namespace {

constexpr char kMagic[5] = {'V', 'S', 'O', 'B', 'J'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeaderSize = 5 + 1 + 1 + 8 + crypto::kNonceSize; // 27

Bytes aadFor(std::span<const uint8_t> header, const std::string &name)
{
	Bytes aad(header.size() + name.size());
	std::memcpy(aad.data(), header.data(), header.size());
	if (!name.empty())
		std::memcpy(aad.data() + header.size(), name.data(), name.size());
	return aad;
}

std::string domainName(const std::string &storeId, const DomainId &id)
{
	return "key-domain/" + storeId + "/" + toHex(id);
}

} // namespace

Result<KeyDomain> KeyDomain::generate()
{
	KeyDomain d;
	VS_TRY(crypto::randomBytes(d.id));
	auto enc = crypto::SecretKey::random();
	auto idk = crypto::SecretKey::random();
	if (!enc || !idk)
		return fail(errc::kInternal, "cannot generate random keys");
	d.encKey = *enc;
	d.idKey = *idk;
	return d;
}

Result<Bytes> sealObject(ObjectType type, const DomainId &domain, const crypto::SecretKey &key,
			 const std::string &name, std::span<const uint8_t> plaintext)
{
	Bytes out(kHeaderSize);
	std::memcpy(out.data(), kMagic, 5);
	out[5] = kVersion;
	out[6] = uint8_t(type);
	std::memcpy(out.data() + 7, domain.data(), 8);
	crypto::Nonce nonce;
	VS_TRY(crypto::randomBytes(nonce));
	std::memcpy(out.data() + 15, nonce.data(), nonce.size());
	Bytes aad = aadFor(std::span(out).first(kHeaderSize), name);
	crypto::Aead aead(key);
	VS_TRY(aead.seal(nonce, aad, plaintext, out));
	return out;
}

Result<DomainId> objectDomain(std::span<const uint8_t> sealed)
{
	if (sealed.size() < kHeaderSize + crypto::kTagSize || std::memcmp(sealed.data(), kMagic, 5) != 0)
		return fail(errc::kCorrupt, "not a virtsnap object");
	if (sealed[5] != kVersion)
		return fail(errc::kCorrupt, "object format version " + std::to_string(sealed[5]) +
						    " is not supported");
	DomainId d;
	std::memcpy(d.data(), sealed.data() + 7, 8);
	return d;
}

Result<Bytes> openObject(ObjectType type, const crypto::SecretKey &key, const std::string &name,
			 std::span<const uint8_t> sealed)
{
	VS_TRY(objectDomain(sealed));
	if (sealed[6] != uint8_t(type))
		return fail(errc::kCorrupt, "object is of the wrong type");
	crypto::Nonce nonce;
	std::memcpy(nonce.data(), sealed.data() + 15, nonce.size());
	Bytes aad = aadFor(sealed.first(kHeaderSize), name);
	Bytes out;
	crypto::Aead aead(key);
	VS_TRY(aead.open(nonce, aad, sealed.subspan(kHeaderSize), out));
	return out;
}

Result<Bytes> wrapDomain(const KeyDomain &domain, const crypto::SecretKey &master, const std::string &storeId)
{
	Bytes keys;
	keys.insert(keys.end(), domain.encKey.bytes().begin(), domain.encKey.bytes().end());
	keys.insert(keys.end(), domain.idKey.bytes().begin(), domain.idKey.bytes().end());
	auto sealed = sealObject(ObjectType::KeyDomain, domain.id, master, domainName(storeId, domain.id), keys);
	std::fill(keys.begin(), keys.end(), 0);
	return sealed;
}

Result<KeyDomain> unwrapDomain(std::span<const uint8_t> sealed, const crypto::SecretKey &master,
			       const std::string &storeId)
{
	VS_ASSIGN(auto id, objectDomain(sealed));
	auto keys = openObject(ObjectType::KeyDomain, master, domainName(storeId, id), sealed);
	if (!keys)
		return fail(errc::kWrongKey, "the key file does not open this store");
	if (keys->size() != 2 * crypto::kKeySize)
		return fail(errc::kCorrupt, "key domain " + toHex(id) + " has a wrong size");
	KeyDomain d;
	d.id = id;
	d.encKey = crypto::SecretKey(std::span<const uint8_t, 32>(keys->data(), 32));
	d.idKey = crypto::SecretKey(std::span<const uint8_t, 32>(keys->data() + 32, 32));
	std::fill(keys->begin(), keys->end(), 0);
	return d;
}

} // namespace virtsnap::store
