// Known-answer vectors come from the standards (NIST GCM spec test cases
// 13-16, RFC 4231, FIPS 180-2 examples); the other tests check the wrapper
// against independent one-shot OpenSSL calls and its own invariants.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/bytes.h"
#include "crypto/crypto.h"
#include "tests/support/core_test_util.h"

namespace virtsnap::crypto {
namespace {

using virtsnap::test::randomKey;

Bytes hex(std::string_view h)
{
	auto b = fromHex(h);
	EXPECT_TRUE(b.has_value()) << h;
	return b.value_or(Bytes{});
}

Bytes ascii(std::string_view s)
{
	return Bytes(s.begin(), s.end());
}

SecretKey keyFrom(std::string_view h)
{
	Bytes b = hex(h);
	EXPECT_EQ(b.size(), kKeySize);
	b.resize(kKeySize);
	return SecretKey(std::span<const uint8_t, kKeySize>(b.data(), kKeySize));
}

// A short HMAC key zero-padded to 32 bytes: HMAC pads every key shorter
// than the block (64 bytes) with zeros, so this is the same MAC key.
SecretKey paddedKey(std::span<const uint8_t> shortKey)
{
	std::array<uint8_t, kKeySize> b{};
	std::copy(shortKey.begin(), shortKey.end(), b.begin());
	return SecretKey(b);
}

Nonce nonceFrom(std::string_view h)
{
	Bytes b = hex(h);
	Nonce n{};
	EXPECT_EQ(b.size(), n.size());
	std::copy_n(b.begin(), std::min(b.size(), n.size()), n.begin());
	return n;
}

Nonce randomNonce()
{
	Nonce n;
	EXPECT_TRUE(randomBytes(n));
	return n;
}

Bytes randomData(size_t n)
{
	Bytes b(n);
	EXPECT_TRUE(randomBytes(b));
	return b;
}

std::string hexOf(std::span<const uint8_t> d)
{
	return toHex(d);
}

// ---- SHA-256 --------------------------------------------------------------

TEST(Sha256, KnownAnswers)
{
	EXPECT_EQ(hexOf(sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	EXPECT_EQ(hexOf(sha256(ascii("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	EXPECT_EQ(hexOf(sha256(ascii("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, MillionAs)
{
	Bytes a(1000000, 'a');
	EXPECT_EQ(hexOf(sha256(a)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ---- HMAC-SHA256 ----------------------------------------------------------

TEST(Base64, Rfc4648VectorsAndStrictDecoding)
{
	const std::pair<std::string, std::string> vectors[] = {
		{"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
	for (const auto &[plain, encoded] : vectors) {
		std::span<const uint8_t> bytes((const uint8_t *)plain.data(), plain.size());
		EXPECT_EQ(base64(bytes), encoded);
		auto back = fromBase64(encoded);
		ASSERT_TRUE(back) << encoded;
		EXPECT_EQ(std::string(back->begin(), back->end()), plain);
	}
	// Not canonical, not padded, blanks, other alphabets, padding inside.
	for (std::string bad : {"", "Zg", "Zh==", "Zm9v\n", "Zm 9v", "Zm9-", "Zg==Zg==", "=Zg="})
		EXPECT_FALSE(fromBase64(bad)) << bad;
}

TEST(DeriveKey, DependsOnBaseAndLabelAndIsNotTheBase)
{
	SecretKey base = randomKey(), other = randomKey();
	auto bytes = [](const SecretKey &k) { return std::vector<uint8_t>(k.bytes().begin(), k.bytes().end()); };
	EXPECT_EQ(bytes(deriveKey(base, "a")), bytes(deriveKey(base, "a")));
	EXPECT_NE(bytes(deriveKey(base, "a")), bytes(deriveKey(base, "b")));
	EXPECT_NE(bytes(deriveKey(base, "a")), bytes(deriveKey(other, "a")));
	EXPECT_NE(bytes(deriveKey(base, "a")), bytes(base));
	// Not HMAC(base, label): a chunk id of the label's bytes is no key.
	auto label = std::string_view("a");
	Digest asId = Hmac(base).digest(std::span((const uint8_t *)label.data(), label.size()));
	EXPECT_NE(bytes(deriveKey(base, "a")), std::vector<uint8_t>(asId.begin(), asId.end()));
	uint8_t x[] = {1, 2, 3}, y[] = {1, 2, 4};
	EXPECT_TRUE(equalConstantTime(x, x));
	EXPECT_FALSE(equalConstantTime(x, y));
	EXPECT_FALSE(equalConstantTime(x, std::span(x, 2)));
}

TEST(Hmac, Rfc4231Case1)
{
	Bytes k(20, 0x0b);
	Hmac h(paddedKey(k));
	EXPECT_EQ(hexOf(h.digest(ascii("Hi There"))),
		  "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(Hmac, Rfc4231Case2)
{
	Hmac h(paddedKey(ascii("Jefe")));
	EXPECT_EQ(hexOf(h.digest(ascii("what do ya want for nothing?"))),
		  "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Hmac, FullLengthKey)
{
	// Computed with Python's hmac module (an independent implementation).
	Hmac h(keyFrom("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"));
	EXPECT_EQ(hexOf(h.digest(ascii("what do ya want for nothing?"))),
		  "099805f4ac310786968565c098db515cc50862b420ae31e20238312344bed36a");
}

Digest oneShotHmac(const SecretKey &key, std::span<const uint8_t> data)
{
	Digest out{};
	size_t len = 0;
	auto k = key.bytes();
	EXPECT_NE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, k.data(), k.size(), data.data(),
			    data.size(), out.data(), out.size(), &len),
		  nullptr);
	EXPECT_EQ(len, kDigestSize);
	return out;
}

TEST(Hmac, MatchesOneShotAndIsStableAcrossCalls)
{
	for (int round = 0; round < 8; round++) {
		SecretKey key = randomKey();
		Hmac h(key);
		// Several calls on one instance: each must start from the key,
		// not continue the previous message.
		for (size_t n : {0, 1, 63, 64, 65, 4096, 65536, 65537}) {
			Bytes data = randomData(n);
			Digest expected = oneShotHmac(key, data);
			EXPECT_EQ(h.digest(data), expected) << n;
			EXPECT_EQ(h.digest(data), expected) << n;
		}
	}
}

TEST(Hmac, DependsOnKeyAndData)
{
	Hmac a(randomKey()), b(randomKey());
	Bytes data = ascii("chunk");
	EXPECT_NE(a.digest(data), b.digest(data));
	EXPECT_NE(a.digest(data), a.digest(ascii("chunk2")));
	EXPECT_NE(a.digest(data), sha256(data));
}

TEST(Hmac, CloneIsIndependent)
{
	SecretKey key = randomKey();
	Bytes x = randomData(1000), y = randomData(777);
	auto original = std::make_unique<Hmac>(key);
	std::unique_ptr<Hmac> copy = original->clone();
	ASSERT_NE(copy, nullptr);
	EXPECT_EQ(copy->digest(x), oneShotHmac(key, x));
	EXPECT_EQ(original->digest(y), oneShotHmac(key, y));
	EXPECT_EQ(copy->digest(y), oneShotHmac(key, y));
	// The clone must survive its source.
	original.reset();
	EXPECT_EQ(copy->digest(x), oneShotHmac(key, x));
	auto second = copy->clone();
	EXPECT_EQ(second->digest(y), oneShotHmac(key, y));
}

TEST(Hmac, MoveKeepsKey)
{
	SecretKey key = randomKey();
	Hmac a(key);
	Hmac b(std::move(a));
	Bytes x = ascii("moved");
	EXPECT_EQ(b.digest(x), oneShotHmac(key, x));
}

TEST(Hmac, ClonesOnThreads)
{
	SecretKey key = randomKey();
	Hmac h(key);
	std::vector<Bytes> inputs;
	std::vector<Digest> expected;
	for (int i = 0; i < 64; i++) {
		inputs.push_back(randomData(size_t(i) * 1000 + 1));
		expected.push_back(oneShotHmac(key, inputs.back()));
	}
	std::vector<int> mismatches(4, 0);
	std::vector<std::thread> threads;
	for (int t = 0; t < 4; t++) {
		threads.emplace_back([&, t, mine = h.clone()] {
			for (int rep = 0; rep < 20; rep++)
				for (size_t i = 0; i < inputs.size(); i++)
					if (mine->digest(inputs[i]) != expected[i])
						mismatches[size_t(t)]++;
		});
	}
	for (auto &th : threads)
		th.join();
	for (int m : mismatches)
		EXPECT_EQ(m, 0);
}

// ---- AES-256-GCM ----------------------------------------------------------

struct GcmVector {
	const char *name;
	const char *key, *nonce, *plaintext, *aad, *ciphertext, *tag;
};

// NIST "The Galois/Counter Mode of Operation" test cases 13-16 (256-bit
// key, 96-bit IV); also checked against Python's cryptography module.
const GcmVector kGcmVectors[] = {
	{"TC13", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
	 "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
	{"TC14", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
	 "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18",
	 "d0d1c8a799996bf0265b98b5d48ab919"},
	{"TC15", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
	 "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
	 "b16aedf5aa0de657ba637b391aafd255",
	 "",
	 "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
	 "c5f61e6393ba7a0abcc9f662898015ad",
	 "b094dac5d93471bdec1a502270e3cc6c"},
	{"TC16", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
	 "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
	 "b16aedf5aa0de657ba637b39",
	 "feedfacedeadbeeffeedfacedeadbeefabaddad2",
	 "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
	 "c5f61e6393ba7a0abcc9f662",
	 "76fc6ece0f4e1768cddf8853bb2d551b"},
};

TEST(Aead, NistKnownAnswers)
{
	for (const auto &v : kGcmVectors) {
		SCOPED_TRACE(v.name);
		Aead aead(keyFrom(v.key));
		Nonce nonce = nonceFrom(v.nonce);
		Bytes sealed;
		ASSERT_TRUE(aead.seal(nonce, hex(v.aad), hex(v.plaintext), sealed));
		EXPECT_EQ(toHex(sealed), std::string(v.ciphertext) + v.tag);
		Bytes opened;
		auto r = aead.open(nonce, hex(v.aad), sealed, opened);
		ASSERT_TRUE(r) << r.error().toString();
		EXPECT_EQ(toHex(opened), v.plaintext);
	}
}

TEST(Aead, KnownAnswersOnOneInstance)
{
	// Both TC15 and TC16 under one instance, interleaved with opens: the
	// nonce-only re-init must reset all per-message state.
	Aead aead(keyFrom(kGcmVectors[2].key));
	for (int rep = 0; rep < 3; rep++) {
		for (int i : {3, 2}) {
			const auto &v = kGcmVectors[i];
			Bytes sealed;
			ASSERT_TRUE(aead.seal(nonceFrom(v.nonce), hex(v.aad), hex(v.plaintext), sealed));
			EXPECT_EQ(toHex(sealed), std::string(v.ciphertext) + v.tag) << v.name;
			Bytes opened;
			ASSERT_TRUE(aead.open(nonceFrom(v.nonce), hex(v.aad), sealed, opened));
		}
	}
}

// Independent one-shot AES-256-GCM: a fresh context given key and nonce
// together, as the textbook EVP usage does.
Bytes oneShotSeal(const SecretKey &key, const Nonce &nonce, std::span<const uint8_t> aad,
		  std::span<const uint8_t> pt)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	Bytes out(pt.size() + kTagSize);
	int len = 0;
	uint8_t scratch[16];
	EXPECT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.bytes().data(), nonce.data()), 1);
	if (!aad.empty()) {
		EXPECT_EQ(EVP_EncryptUpdate(ctx, nullptr, &len, aad.data(), int(aad.size())), 1);
	}
	if (!pt.empty()) {
		EXPECT_EQ(EVP_EncryptUpdate(ctx, out.data(), &len, pt.data(), int(pt.size())), 1);
	}
	EXPECT_EQ(EVP_EncryptFinal_ex(ctx, scratch, &len), 1);
	EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out.data() + pt.size()), 1);
	EVP_CIPHER_CTX_free(ctx);
	return out;
}

TEST(Aead, RoundTripsAndMatchesOneShot)
{
	SecretKey key = randomKey();
	Aead aead(key);
	for (size_t n : {size_t(0), size_t(1), size_t(15), size_t(16), size_t(17), size_t(4095), size_t(65536),
			 size_t(65537), size_t(1) << 20}) {
		SCOPED_TRACE(n);
		Bytes pt = randomData(n);
		Bytes aad = randomData(n % 40);
		Nonce nonce = randomNonce();
		Bytes sealed;
		ASSERT_TRUE(aead.seal(nonce, aad, pt, sealed));
		ASSERT_EQ(sealed.size(), n + kTagSize);
		EXPECT_EQ(sealed, oneShotSeal(key, nonce, aad, pt));
		Bytes opened;
		auto r = aead.open(nonce, aad, sealed, opened);
		ASSERT_TRUE(r) << r.error().toString();
		EXPECT_EQ(opened, pt);
	}
}

TEST(Aead, EmptyPlaintext)
{
	Aead aead(randomKey());
	Nonce nonce = randomNonce();
	Bytes aad = ascii("header");
	Bytes sealed;
	ASSERT_TRUE(aead.seal(nonce, aad, {}, sealed));
	EXPECT_EQ(sealed.size(), kTagSize);
	Bytes opened;
	ASSERT_TRUE(aead.open(nonce, aad, sealed, opened));
	EXPECT_TRUE(opened.empty());
	// The tag still covers the aad.
	auto r = aead.open(nonce, ascii("Header"), sealed, opened);
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
}

TEST(Aead, LargeChunk)
{
	SecretKey key = randomKey();
	Aead aead(key);
	Bytes pt = randomData(1 << 20);
	Nonce nonce = randomNonce();
	Bytes sealed;
	ASSERT_TRUE(aead.seal(nonce, {}, pt, sealed));
	// Ciphertext must not be the plaintext in disguise.
	EXPECT_NE(Bytes(sealed.begin(), sealed.begin() + 4096), Bytes(pt.begin(), pt.begin() + 4096));
	Bytes opened;
	ASSERT_TRUE(aead.open(nonce, {}, sealed, opened));
	EXPECT_EQ(opened, pt);
}

TEST(Aead, AppendsToOutput)
{
	Aead aead(randomKey());
	Nonce nonce = randomNonce();
	Bytes pt = ascii("payload");
	Bytes sealed = ascii("prefix");
	ASSERT_TRUE(aead.seal(nonce, {}, pt, sealed));
	ASSERT_EQ(sealed.size(), 6 + pt.size() + kTagSize);
	EXPECT_EQ(Bytes(sealed.begin(), sealed.begin() + 6), ascii("prefix"));
	Bytes opened = ascii("head:");
	ASSERT_TRUE(aead.open(nonce, {}, std::span<const uint8_t>(sealed).subspan(6), opened));
	EXPECT_EQ(opened, ascii("head:payload"));
}

void expectAuthFailure(const Result<void> &r)
{
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kCorrupt);
	EXPECT_NE(r.error().message.find("authentication failed"), std::string::npos) << r.error().message;
}

TEST(Aead, TamperingIsDetected)
{
	SecretKey key = randomKey();
	Aead aead(key);
	Nonce nonce = randomNonce();
	Bytes aad = ascii("chunk-id");
	Bytes pt = randomData(1000);
	Bytes sealed;
	ASSERT_TRUE(aead.seal(nonce, aad, pt, sealed));

	const Bytes before = ascii("untouched");
	auto check = [&](const char *what, const Aead &a, const Nonce &n, std::span<const uint8_t> ad,
			 std::span<const uint8_t> s) {
		SCOPED_TRACE(what);
		Bytes out = before;
		expectAuthFailure(a.open(n, ad, s, out));
		// Nothing unauthenticated may be handed back.
		EXPECT_EQ(out, before);
	};

	for (size_t bit : {size_t(0), size_t(7), size_t(8 * 500 + 3), size_t(8 * 999 + 7)}) {
		Bytes bad = sealed;
		bad[bit / 8] ^= uint8_t(1u << (bit % 8));
		check("ciphertext bit", aead, nonce, aad, bad);
	}
	for (size_t i : {size_t(0), kTagSize - 1}) {
		Bytes bad = sealed;
		bad[pt.size() + i] ^= 0x80;
		check("tag bit", aead, nonce, aad, bad);
	}
	check("different aad", aead, nonce, ascii("chunk-ie"), sealed);
	check("missing aad", aead, nonce, {}, sealed);
	Nonce otherNonce = nonce;
	otherNonce[11] ^= 1;
	check("different nonce", aead, otherNonce, aad, sealed);
	Aead other(randomKey());
	check("different key", other, nonce, aad, sealed);
	check("truncated", aead, nonce, aad, std::span<const uint8_t>(sealed).first(sealed.size() - 1));
	check("shorter than a tag", aead, nonce, aad, std::span<const uint8_t>(sealed).first(kTagSize - 1));
	check("empty", aead, nonce, aad, {});

	// A failed open leaves the instance usable.
	Bytes opened;
	ASSERT_TRUE(aead.open(nonce, aad, sealed, opened));
	EXPECT_EQ(opened, pt);
}

TEST(Aead, DistinctNoncesGiveDistinctCiphertexts)
{
	Aead aead(randomKey());
	Bytes pt = randomData(256);
	Bytes a, b, c;
	Nonce n1 = randomNonce(), n2 = randomNonce();
	ASSERT_NE(n1, n2);
	ASSERT_TRUE(aead.seal(n1, {}, pt, a));
	ASSERT_TRUE(aead.seal(n2, {}, pt, b));
	ASSERT_TRUE(aead.seal(n1, {}, pt, c));
	EXPECT_NE(a, b);
	// Deterministic for the same nonce (so the nonce really is what varies).
	EXPECT_EQ(a, c);
	// No shared 16-byte block in the ciphertexts either.
	for (size_t i = 0; i + 16 <= pt.size(); i += 16)
		EXPECT_NE(Bytes(a.begin() + long(i), a.begin() + long(i) + 16),
			  Bytes(b.begin() + long(i), b.begin() + long(i) + 16));
}

TEST(Aead, MoveKeepsKey)
{
	SecretKey key = randomKey();
	Aead a(key);
	Aead b(std::move(a));
	Nonce nonce = randomNonce();
	Bytes pt = ascii("moved"), sealed;
	ASSERT_TRUE(b.seal(nonce, {}, pt, sealed));
	EXPECT_EQ(sealed, oneShotSeal(key, nonce, {}, pt));
}

TEST(Aead, InstancesOnThreads)
{
	SecretKey key = randomKey();
	std::vector<int> failures(4, 0);
	std::vector<std::thread> threads;
	for (int t = 0; t < 4; t++) {
		threads.emplace_back([&, t] {
			Aead aead(key);
			for (int i = 0; i < 200; i++) {
				Bytes pt(size_t(i) * 97 + 1, uint8_t(t));
				Nonce nonce{};
				nonce[0] = uint8_t(t);
				nonce[1] = uint8_t(i);
				Bytes sealed, opened;
				if (!aead.seal(nonce, {}, pt, sealed) || !aead.open(nonce, {}, sealed, opened) ||
				    opened != pt)
					failures[size_t(t)]++;
			}
		});
	}
	for (auto &th : threads)
		th.join();
	for (int f : failures)
		EXPECT_EQ(f, 0);
	// And the threads' instances interoperate with a fresh one.
	Aead aead(key);
	Nonce nonce{};
	nonce[0] = 3;
	nonce[1] = 5;
	Bytes pt(5 * 97 + 1, 3), sealed;
	ASSERT_TRUE(aead.seal(nonce, {}, pt, sealed));
	EXPECT_EQ(sealed, oneShotSeal(key, nonce, {}, pt));
}

// ---- keys and randomness --------------------------------------------------

TEST(SecretKey, RandomKeysDiffer)
{
	SecretKey a = randomKey(), b = randomKey();
	EXPECT_FALSE(std::ranges::equal(a.bytes(), b.bytes()));
	std::array<uint8_t, kKeySize> zero{};
	EXPECT_FALSE(std::ranges::equal(a.bytes(), zero));
}

TEST(SecretKey, CopyAndAssign)
{
	SecretKey a = randomKey();
	SecretKey b(a);
	EXPECT_TRUE(std::ranges::equal(a.bytes(), b.bytes()));
	SecretKey c = randomKey();
	c = a;
	EXPECT_TRUE(std::ranges::equal(a.bytes(), c.bytes()));
	const SecretKey &self = c;
	c = self;
	EXPECT_TRUE(std::ranges::equal(a.bytes(), c.bytes()));
	SecretKey d;
	std::array<uint8_t, kKeySize> zero{};
	EXPECT_TRUE(std::ranges::equal(d.bytes(), zero));
}

TEST(SecretKey, DestructorWipes)
{
	// Construct in storage this test owns, destroy, and look at the bytes
	// that held the key.
	alignas(SecretKey) unsigned char storage[sizeof(SecretKey)];
	std::array<uint8_t, kKeySize> pattern;
	pattern.fill(0xA5);
	auto *key = new (storage) SecretKey(pattern);
	ASSERT_TRUE(std::ranges::equal(key->bytes(), pattern));
	key->~SecretKey();
	unsigned char after[sizeof(SecretKey)];
	std::memcpy(after, storage, sizeof after);
	EXPECT_EQ(std::count(after, after + sizeof after, 0xA5), 0);
}

TEST(RandomBytes, FillsAndVaries)
{
	Bytes a(4096), b(4096);
	ASSERT_TRUE(randomBytes(a));
	ASSERT_TRUE(randomBytes(b));
	EXPECT_NE(a, b);
	EXPECT_GT(std::count_if(a.begin(), a.end(), [](uint8_t x) { return x != 0; }), 3900);
	EXPECT_TRUE(randomBytes({}));
}

} // namespace
} // namespace virtsnap::crypto
