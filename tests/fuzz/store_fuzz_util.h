// The store targets' fixed keys, which let a target get past authentication
// to the parser behind it, and the two ways a sealed object's
// parser is reached: the input as a sealed object (which must fail
// authentication unless it is one), and the input as plaintext sealed here,
// so the parser sees arbitrary bytes that authenticated.
#pragma once

#include "core/bytes.h"
#include "crypto/crypto.h"
#include "fuzz_util.h"
#include "store/key_domain.h"

namespace virtsnap::fuzz {

// Never a real key: each byte is its index plus `salt`.
inline crypto::SecretKey testKey(uint8_t salt)
{
	std::array<uint8_t, crypto::kKeySize> raw;
	for (size_t i = 0; i < raw.size(); i++)
		raw[i] = uint8_t(i + salt);
	return crypto::SecretKey(std::span<const uint8_t, crypto::kKeySize>(raw));
}

inline const store::KeyDomain &testDomain()
{
	static const store::KeyDomain domain = [] {
		store::KeyDomain d;
		for (size_t i = 0; i < d.id.size(); i++)
			d.id[i] = uint8_t(0xd0 + i);
		d.encKey = testKey(1);
		d.idKey = testKey(2);
		return d;
	}();
	return domain;
}

// Calls `parse` on what opening the input yields, if anything, and then on
// the input sealed and opened again.
template<typename Parse>
void openBothWays(store::ObjectType type, const std::string &name, std::span<const uint8_t> input,
		  const crypto::SecretKey &key, Parse parse)
{
	if (auto plain = store::openObject(type, key, name, input))
		parse(std::span<const uint8_t>(*plain));
	auto sealed = store::sealObject(type, testDomain().id, key, name, input);
	check(sealed.has_value(), "sealing works");
	auto opened = store::openObject(type, key, name, *sealed);
	check(opened.has_value() && Bytes(input.begin(), input.end()) == *opened, "what is sealed opens");
	parse(std::span<const uint8_t>(*opened));
}

} // namespace virtsnap::fuzz
