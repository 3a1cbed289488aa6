#include "crypto/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>

namespace virtsnap::crypto {

namespace {

// OpenSSL's length arguments are int; feed larger buffers in pieces well
// below INT_MAX (GCM and the digests are streaming, so this is exact).
constexpr size_t kMaxPiece = size_t(1) << 30;

// Names the last OpenSSL error and empties the thread's error queue, so a
// stale entry is never reported against a later, unrelated failure.
std::string lastOpensslError()
{
	unsigned long e = ERR_peek_last_error();
	std::string msg = "unknown OpenSSL error";
	if (e != 0) {
		char buf[256];
		ERR_error_string_n(e, buf, sizeof buf);
		msg = buf;
	}
	ERR_clear_error();
	return msg;
}

std::unexpected<Error> failOpenssl(const std::string &what)
{
	return fail(errc::kInternal, what + ": " + lastOpensslError());
}

// Explicit fetches, done once per process: passing the legacy EVP_sha256()
// etc. makes OpenSSL 3 look the algorithm up again on every call, which
// is measurable per 64 KiB chunk. Never freed: they live as long as the
// process and are shared read-only between threads.
const EVP_MD *sha256Md()
{
	static EVP_MD *md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
	return md;
}

const EVP_CIPHER *aesGcmCipher()
{
	static EVP_CIPHER *cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
	return cipher;
}

EVP_MAC *hmacMac()
{
	static EVP_MAC *mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
	return mac;
}

// For the functions whose signature cannot carry an error (sha256, Hmac):
// these only fail if OpenSSL itself is broken or out of memory, and
// returning a made-up digest would silently corrupt the store's ids.
[[noreturn]] void dieOpenssl()
{
	std::abort();
}

} // namespace

// ---- SecretKey ----------------------------------------------------------

SecretKey::SecretKey(std::span<const uint8_t, kKeySize> bytes)
{
	std::copy(bytes.begin(), bytes.end(), bytes_.begin());
}

SecretKey &SecretKey::operator=(const SecretKey &other)
{
	if (this != &other) {
		OPENSSL_cleanse(bytes_.data(), bytes_.size());
		bytes_ = other.bytes_;
	}
	return *this;
}

SecretKey::~SecretKey()
{
	OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

Result<SecretKey> SecretKey::random()
{
	SecretKey key;
	// The private DRBG: key material should not come from the same stream
	// as public values such as nonces.
	if (RAND_priv_bytes(key.bytes_.data(), int(key.bytes_.size())) != 1)
		return failOpenssl("generating a key");
	return key;
}

// ---- randomness and hashing ----------------------------------------------

Result<void> randomBytes(std::span<uint8_t> out)
{
	while (!out.empty()) {
		size_t n = std::min(out.size(), kMaxPiece);
		if (RAND_bytes(out.data(), int(n)) != 1)
			return failOpenssl("generating random bytes");
		out = out.subspan(n);
	}
	return {};
}

Digest sha256(std::span<const uint8_t> data)
{
	Digest out;
	const EVP_MD *md = sha256Md();
	if (md == nullptr)
		dieOpenssl();
	if (data.size() <= kMaxPiece) {
		unsigned int len = 0;
		if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1 ||
		    len != kDigestSize)
			dieOpenssl();
		return out;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == nullptr || EVP_DigestInit_ex2(ctx, md, nullptr) != 1)
		dieOpenssl();
	for (size_t off = 0; off < data.size(); off += kMaxPiece) {
		size_t n = std::min(data.size() - off, kMaxPiece);
		if (EVP_DigestUpdate(ctx, data.data() + off, n) != 1)
			dieOpenssl();
	}
	unsigned int len = 0;
	if (EVP_DigestFinal_ex(ctx, out.data(), &len) != 1 || len != kDigestSize)
		dieOpenssl();
	EVP_MD_CTX_free(ctx);
	return out;
}

// ---- derived keys --------------------------------------------------------

SecretKey deriveKey(const SecretKey &base, std::string_view label)
{
	// Fetched once, like the digests above.
	static EVP_KDF *hkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
	if (hkdf == nullptr)
		dieOpenssl();
	EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(hkdf);
	if (ctx == nullptr)
		dieOpenssl();
	char digestName[] = "SHA256";
	std::array<uint8_t, kKeySize> ikm;
	std::copy(base.bytes().begin(), base.bytes().end(), ikm.begin());
	std::string info(label);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digestName, 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm.data(), ikm.size()),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
		OSSL_PARAM_construct_end(),
	};
	std::array<uint8_t, kKeySize> out;
	int rc = EVP_KDF_derive(ctx, out.data(), out.size(), params);
	EVP_KDF_CTX_free(ctx);
	OPENSSL_cleanse(ikm.data(), ikm.size());
	if (rc != 1)
		dieOpenssl();
	SecretKey key{std::span<const uint8_t, kKeySize>(out)};
	OPENSSL_cleanse(out.data(), out.size());
	return key;
}

bool equalConstantTime(std::span<const uint8_t> a, std::span<const uint8_t> b)
{
	return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---- Hmac ---------------------------------------------------------------

struct Hmac::Impl {
	// Keyed once; digest() re-initialises it without a key, which for HMAC
	// just restores the precomputed inner/outer pads (no allocation, no
	// key schedule). mutable because that reset is invisible to callers.
	mutable EVP_MAC_CTX *ctx = nullptr;

	~Impl() { EVP_MAC_CTX_free(ctx); }
};

Hmac::Hmac(const SecretKey &key) : impl_(std::make_unique<Impl>())
{
	EVP_MAC *mac = hmacMac();
	if (mac == nullptr)
		dieOpenssl();
	impl_->ctx = EVP_MAC_CTX_new(mac);
	if (impl_->ctx == nullptr)
		dieOpenssl();
	char digestName[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digestName, 0),
		OSSL_PARAM_construct_end(),
	};
	auto k = key.bytes();
	if (EVP_MAC_init(impl_->ctx, k.data(), k.size(), params) != 1)
		dieOpenssl();
}

Hmac::Hmac(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Hmac::~Hmac() = default;
Hmac::Hmac(Hmac &&) noexcept = default;

Digest Hmac::digest(std::span<const uint8_t> data) const
{
	EVP_MAC_CTX *ctx = impl_->ctx;
	if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1)
		dieOpenssl();
	for (size_t off = 0; off < data.size(); off += kMaxPiece) {
		size_t n = std::min(data.size() - off, kMaxPiece);
		if (EVP_MAC_update(ctx, data.data() + off, n) != 1)
			dieOpenssl();
	}
	Digest out;
	size_t len = 0;
	if (EVP_MAC_final(ctx, out.data(), &len, out.size()) != 1 || len != kDigestSize)
		dieOpenssl();
	return out;
}

std::unique_ptr<Hmac> Hmac::clone() const
{
	// Duplicating the keyed context copies the prepared pads, so the clone
	// needs no access to the key bytes.
	auto impl = std::make_unique<Impl>();
	impl->ctx = EVP_MAC_CTX_dup(impl_->ctx);
	if (impl->ctx == nullptr)
		dieOpenssl();
	return std::unique_ptr<Hmac>(new Hmac(std::move(impl)));
}

// ---- Aead ---------------------------------------------------------------

struct Aead::Impl {
	// One context per direction, each given the key (and so its key
	// schedule) once; a call only sets the nonce. mutable: seal/open are
	// logically const, the contexts are scratch state.
	mutable EVP_CIPHER_CTX *enc = nullptr;
	mutable EVP_CIPHER_CTX *dec = nullptr;
	// The constructor cannot return an error; a failed setup is reported
	// by every later seal/open instead.
	std::string setupError;

	~Impl()
	{
		EVP_CIPHER_CTX_free(enc);
		EVP_CIPHER_CTX_free(dec);
	}
};

Aead::Aead(const SecretKey &key) : impl_(std::make_unique<Impl>())
{
	const EVP_CIPHER *cipher = aesGcmCipher();
	if (cipher == nullptr) {
		impl_->setupError = "AES-256-GCM unavailable: " + lastOpensslError();
		return;
	}
	impl_->enc = EVP_CIPHER_CTX_new();
	impl_->dec = EVP_CIPHER_CTX_new();
	auto k = key.bytes();
	if (impl_->enc == nullptr || impl_->dec == nullptr ||
	    EVP_CipherInit_ex(impl_->enc, cipher, nullptr, k.data(), nullptr, 1) != 1 ||
	    EVP_CipherInit_ex(impl_->dec, cipher, nullptr, k.data(), nullptr, 0) != 1)
		impl_->setupError = "AES-256-GCM setup: " + lastOpensslError();
}

Aead::~Aead() = default;
Aead::Aead(Aead &&) noexcept = default;

namespace {

// Runs `in` through the cipher into `dst` (same length: GCM is a stream
// mode), in pieces the int-based API accepts.
bool cipherUpdate(EVP_CIPHER_CTX *ctx, std::span<const uint8_t> in, uint8_t *dst)
{
	for (size_t off = 0; off < in.size(); off += kMaxPiece) {
		size_t n = std::min(in.size() - off, kMaxPiece);
		int outLen = 0;
		if (EVP_CipherUpdate(ctx, dst + off, &outLen, in.data() + off, int(n)) != 1 ||
		    size_t(outLen) != n)
			return false;
	}
	return true;
}

bool cipherAad(EVP_CIPHER_CTX *ctx, std::span<const uint8_t> aad)
{
	for (size_t off = 0; off < aad.size(); off += kMaxPiece) {
		size_t n = std::min(aad.size() - off, kMaxPiece);
		int outLen = 0;
		if (EVP_CipherUpdate(ctx, nullptr, &outLen, aad.data() + off, int(n)) != 1)
			return false;
	}
	return true;
}

} // namespace

Result<void> Aead::seal(const Nonce &nonce, std::span<const uint8_t> aad,
			std::span<const uint8_t> plaintext, Bytes &out) const
{
	if (!impl_->setupError.empty())
		return fail(errc::kInternal, impl_->setupError);
	EVP_CIPHER_CTX *ctx = impl_->enc;
	const size_t base = out.size();
	out.resize(base + plaintext.size() + kTagSize);
	uint8_t *dst = out.data() + base;
	// GCM's final step emits no bytes; a scratch buffer keeps the pointer
	// valid even when the output is empty.
	uint8_t finalBuf[kTagSize];
	int finalLen = 0;
	if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, nonce.data(), 1) != 1 ||
	    !cipherAad(ctx, aad) || !cipherUpdate(ctx, plaintext, dst) ||
	    EVP_CipherFinal_ex(ctx, finalBuf, &finalLen) != 1 || finalLen != 0 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, int(kTagSize), dst + plaintext.size()) != 1) {
		out.resize(base);
		return failOpenssl("AES-256-GCM seal");
	}
	return {};
}

Result<void> Aead::open(const Nonce &nonce, std::span<const uint8_t> aad,
			std::span<const uint8_t> sealed, Bytes &out) const
{
	if (sealed.size() < kTagSize)
		return fail(errc::kCorrupt, "authentication failed (sealed data shorter than a tag)");
	const size_t base = out.size();
	out.resize(base + sealed.size() - kTagSize);
	auto opened = open(nonce, aad, sealed, std::span<uint8_t>(out).subspan(base));
	if (!opened)
		out.resize(base);
	return opened;
}

Result<void> Aead::open(const Nonce &nonce, std::span<const uint8_t> aad,
			std::span<const uint8_t> sealed, std::span<uint8_t> out) const
{
	if (!impl_->setupError.empty())
		return fail(errc::kInternal, impl_->setupError);
	if (sealed.size() < kTagSize)
		return fail(errc::kCorrupt, "authentication failed (sealed data shorter than a tag)");
	auto ciphertext = sealed.first(sealed.size() - kTagSize);
	if (out.size() != ciphertext.size())
		return fail(errc::kInternal, "AES-256-GCM open: output of " + std::to_string(out.size()) +
						     " bytes for " + std::to_string(ciphertext.size()));
	EVP_CIPHER_CTX *ctx = impl_->dec;
	// The ctrl takes a non-const pointer; don't cast away the caller's const.
	std::array<uint8_t, kTagSize> tag;
	std::copy(sealed.end() - kTagSize, sealed.end(), tag.begin());
	uint8_t *dst = out.data();
	// Drops the unauthenticated plaintext so no caller can use it by mistake.
	auto discard = [&] { OPENSSL_cleanse(dst, ciphertext.size()); };
	if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, nonce.data(), 0) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, int(kTagSize), tag.data()) != 1 ||
	    !cipherAad(ctx, aad) || !cipherUpdate(ctx, ciphertext, dst)) {
		discard();
		return failOpenssl("AES-256-GCM open");
	}
	uint8_t finalBuf[kTagSize];
	int finalLen = 0;
	if (EVP_CipherFinal_ex(ctx, finalBuf, &finalLen) != 1 || finalLen != 0) {
		discard();
		ERR_clear_error();
		return fail(errc::kCorrupt, "authentication failed");
	}
	return {};
}

} // namespace virtsnap::crypto
