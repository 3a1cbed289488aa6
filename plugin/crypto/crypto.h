// The cryptographic primitives of the store, all from OpenSSL 3:
// AES-256-GCM sealing, HMAC-SHA256 keyed ids, SHA-256, randomness and
// key files. Key material lives in SecretKey, which wipes itself.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/error.h"

namespace virtsnap::crypto {

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kNonceSize = 12;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kDigestSize = 32;

using Digest = std::array<uint8_t, kDigestSize>;
using Nonce = std::array<uint8_t, kNonceSize>;

// 32 bytes of key material, wiped (OPENSSL_cleanse) when destroyed.
class SecretKey
{
public:
	SecretKey() { bytes_.fill(0); }
	explicit SecretKey(std::span<const uint8_t, kKeySize> bytes);
	SecretKey(const SecretKey &other) : SecretKey(std::span<const uint8_t, kKeySize>(other.bytes_)) {}
	SecretKey &operator=(const SecretKey &other);
	~SecretKey();

	static Result<SecretKey> random();
	std::span<const uint8_t, kKeySize> bytes() const { return bytes_; }

private:
	std::array<uint8_t, kKeySize> bytes_;
};

Result<void> randomBytes(std::span<uint8_t> out);
Digest sha256(std::span<const uint8_t> data);

// A key for one purpose, derived from `base` with HKDF-SHA256 and `label`
// as its info: a key used for one thing (chunk ids) then never serves as
// another (block tokens), and nothing derived reveals `base`.
SecretKey deriveKey(const SecretKey &base, std::string_view label);
// Compares in time that does not depend on where they differ: for MACs.
bool equalConstantTime(std::span<const uint8_t> a, std::span<const uint8_t> b);

// Standard base64 (RFC 4648, with padding), as the EBS APIs print
// checksums and tokens. decode refuses anything else (nullopt).
std::string base64(std::span<const uint8_t> data);
std::optional<Bytes> fromBase64(std::string_view text);

// Keyed ids: HMAC-SHA256 under one key. Holds a prepared context, so one
// instance per thread; cheap to copy with clone().
class Hmac
{
public:
	explicit Hmac(const SecretKey &key);
	~Hmac();
	Hmac(Hmac &&) noexcept;
	Hmac(const Hmac &) = delete;
	Digest digest(std::span<const uint8_t> data) const;
	std::unique_ptr<Hmac> clone() const;

private:
	struct Impl;
	explicit Hmac(std::unique_ptr<Impl> impl);
	std::unique_ptr<Impl> impl_;
};

// AES-256-GCM with a caller-supplied or fresh random 96-bit nonce. One
// instance per thread (it keeps a cipher context).
class Aead
{
public:
	explicit Aead(const SecretKey &key);
	~Aead();
	Aead(Aead &&) noexcept;
	Aead(const Aead &) = delete;

	// Appends ciphertext || 16-byte tag to `out`.
	Result<void> seal(const Nonce &nonce, std::span<const uint8_t> aad,
			  std::span<const uint8_t> plaintext, Bytes &out) const;
	// `sealed` is ciphertext || tag. A tag mismatch (wrong key, flipped
	// bit, wrong aad) is an error of code StoreCorrupted whose message
	// says "authentication failed".
	Result<void> open(const Nonce &nonce, std::span<const uint8_t> aad,
			  std::span<const uint8_t> sealed, Bytes &out) const;
	// The same into `out`, which must be exactly the plaintext's length
	// (sealed less the tag): for callers that reuse one buffer for many
	// opens, with no allocation and no zero fill each time. On failure
	// `out` is wiped.
	Result<void> open(const Nonce &nonce, std::span<const uint8_t> aad,
			  std::span<const uint8_t> sealed, std::span<uint8_t> out) const;

private:
	struct Impl;
	std::unique_ptr<Impl> impl_;
};

// Key files: one line "virtsnap-key-v1 <64 hex digits>\n", mode 0600.
// load refuses a file that others may read or write, naming the mode,
// and never puts key material in an error message.
Result<SecretKey> loadKeyFile(const std::filesystem::path &path);
// The content check of loadKeyFile, on bytes already read; `name` is only
// for the error message.
Result<SecretKey> parseKeyFile(std::string_view text, const std::string &name);
// Creates the file (and its directory, 0700) with O_EXCL and mode 0600;
// fails with TargetExists if it is there already.
Result<void> writeKeyFile(const std::filesystem::path &path, const SecretKey &key);

} // namespace virtsnap::crypto
