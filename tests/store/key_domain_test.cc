// Key domains and sealed objects (FORMAT.md "Keys", "Sealed objects"): an
// object opens only with its type, its name and its key, and a wrong master
// key is WrongKey, not corruption.
#include <cstring>

#include "store/chunk_codec.h"
#include "store/key_domain.h"
#include "store_test_util.h"

namespace virtsnap::store::test {
namespace {

KeyDomain newDomain()
{
	auto d = KeyDomain::generate();
	EXPECT_TRUE(d) << describe(d);
	return d ? std::move(*d) : KeyDomain{};
}

bool sameKey(const crypto::SecretKey &a, const crypto::SecretKey &b)
{
	return std::memcmp(a.bytes().data(), b.bytes().data(), crypto::kKeySize) == 0;
}

TEST(KeyDomainTest, GenerateGivesDistinctDomains)
{
	KeyDomain a = newDomain(), b = newDomain();
	EXPECT_NE(a.id, b.id);
	EXPECT_FALSE(sameKey(a.encKey, b.encKey));
	EXPECT_FALSE(sameKey(a.idKey, b.idKey));
	EXPECT_FALSE(sameKey(a.encKey, a.idKey));
	EXPECT_EQ(a.idHex().size(), 16u);
}

TEST(SealedObjectTest, RoundTripForEveryType)
{
	KeyDomain d = newDomain();
	for (ObjectType type : {ObjectType::KeyDomain, ObjectType::PackIndex, ObjectType::Manifest}) {
		for (size_t size : {size_t(0), size_t(1), size_t(1000)}) {
			Bytes plain = randomData(size, size + uint8_t(type));
			auto sealed = sealObject(type, d.id, d.encKey, "name-1", plain);
			ASSERT_TRUE(sealed) << describe(sealed);
			// "VSOBJ" 0x01 | type | domain 8 | nonce 12 | ciphertext | tag
			ASSERT_EQ(sealed->size(), 27 + size + crypto::kTagSize);
			EXPECT_EQ(std::string((const char *)sealed->data(), 5), "VSOBJ");
			EXPECT_EQ((*sealed)[5], 1);
			EXPECT_EQ((*sealed)[6], uint8_t(type));
			auto domain = objectDomain(*sealed);
			ASSERT_TRUE(domain);
			EXPECT_EQ(*domain, d.id);

			auto opened = openObject(type, d.encKey, "name-1", *sealed);
			ASSERT_TRUE(opened) << describe(opened);
			EXPECT_EQ(*opened, plain);
		}
	}
}

TEST(SealedObjectTest, SealingTwiceUsesFreshNonces)
{
	KeyDomain d = newDomain();
	Bytes plain = randomData(64, 1);
	auto a = sealObject(ObjectType::Manifest, d.id, d.encKey, "n", plain);
	auto b = sealObject(ObjectType::Manifest, d.id, d.encKey, "n", plain);
	ASSERT_TRUE(a && b);
	EXPECT_NE(*a, *b);
}

TEST(SealedObjectTest, WrongNameTypeOrKeyFails)
{
	KeyDomain d = newDomain();
	Bytes plain = randomData(200, 2);
	auto sealed = sealObject(ObjectType::Manifest, d.id, d.encKey, "snap-0123456789abcdef0", plain);
	ASSERT_TRUE(sealed);

	for (const char *name : {"snap-0123456789abcdef1", "", "snap-0123456789abcdef", "snap-0123456789abcdef00"}) {
		auto r = openObject(ObjectType::Manifest, d.encKey, name, *sealed);
		ASSERT_FALSE(r) << name;
		EXPECT_EQ(r.error().code, errc::kCorrupt) << name;
	}
	for (ObjectType type : {ObjectType::KeyDomain, ObjectType::PackIndex}) {
		auto r = openObject(type, d.encKey, "snap-0123456789abcdef0", *sealed);
		ASSERT_FALSE(r);
		EXPECT_EQ(r.error().code, errc::kCorrupt);
	}
	auto wrongKey = openObject(ObjectType::Manifest, d.idKey, "snap-0123456789abcdef0", *sealed);
	ASSERT_FALSE(wrongKey);
	EXPECT_EQ(wrongKey.error().code, errc::kCorrupt);
	auto otherDomain = openObject(ObjectType::Manifest, newDomain().encKey, "snap-0123456789abcdef0", *sealed);
	ASSERT_FALSE(otherDomain);
	EXPECT_EQ(otherDomain.error().code, errc::kCorrupt);
}

TEST(SealedObjectTest, EveryFlippedByteFails)
{
	KeyDomain d = newDomain();
	Bytes plain = randomData(40, 3);
	auto sealed = sealObject(ObjectType::PackIndex, d.id, d.encKey, "pack", plain);
	ASSERT_TRUE(sealed);
	for (size_t i = 0; i < sealed->size(); i++) {
		Bytes damaged = *sealed;
		damaged[i] ^= 0x04;
		auto r = openObject(ObjectType::PackIndex, d.encKey, "pack", damaged);
		EXPECT_EQ(codeOf(r), errc::kCorrupt) << "byte " << i;
	}
}

TEST(SealedObjectTest, TruncatedOrForeignInputIsAnError)
{
	KeyDomain d = newDomain();
	auto sealed = sealObject(ObjectType::Manifest, d.id, d.encKey, "n", randomData(30, 4));
	ASSERT_TRUE(sealed);
	for (size_t len = 0; len < sealed->size(); len++) {
		auto r = openObject(ObjectType::Manifest, d.encKey, "n", std::span(*sealed).first(len));
		EXPECT_FALSE(r) << len;
	}
	Bytes garbage = randomData(100, 5);
	EXPECT_FALSE(objectDomain(garbage));
	EXPECT_FALSE(openObject(ObjectType::Manifest, d.encKey, "n", garbage));
}

TEST(KeyDomainTest, WrapUnwrapRoundTrip)
{
	KeyDomain d = newDomain();
	crypto::SecretKey master = randomKey();
	auto wrapped = wrapDomain(d, master, "0011223344556677");
	ASSERT_TRUE(wrapped) << describe(wrapped);
	auto domain = objectDomain(*wrapped);
	ASSERT_TRUE(domain);
	EXPECT_EQ(*domain, d.id);
	// The keys are not in the wrapped file.
	std::string hexFile = toHex(*wrapped);
	EXPECT_EQ(hexFile.find(keyHex(d.encKey)), std::string::npos);
	EXPECT_EQ(hexFile.find(keyHex(d.idKey)), std::string::npos);

	auto back = unwrapDomain(*wrapped, master, "0011223344556677");
	ASSERT_TRUE(back) << describe(back);
	EXPECT_EQ(back->id, d.id);
	EXPECT_TRUE(sameKey(back->encKey, d.encKey));
	EXPECT_TRUE(sameKey(back->idKey, d.idKey));
}

TEST(KeyDomainTest, UnwrapWithWrongMasterIsWrongKey)
{
	KeyDomain d = newDomain();
	crypto::SecretKey master = randomKey();
	auto wrapped = wrapDomain(d, master, "0011223344556677");
	ASSERT_TRUE(wrapped);

	crypto::SecretKey other = randomKey();
	auto r = unwrapDomain(*wrapped, other, "0011223344556677");
	ASSERT_FALSE(r);
	EXPECT_EQ(r.error().code, errc::kWrongKey);
	EXPECT_EQ(r.error().message.find(keyHex(master)), std::string::npos);
	EXPECT_EQ(r.error().message.find(keyHex(other)), std::string::npos);

	// Bound to its store: the right master for another store id fails too.
	auto moved = unwrapDomain(*wrapped, master, "0011223344556678");
	ASSERT_FALSE(moved);
	EXPECT_EQ(moved.error().code, errc::kWrongKey);
}

// FORMAT.md "Chunks": the blob header's fields, and the id check on read.
TEST(ChunkCodecTest, BlobHeaderAndIdCheck)
{
	KeyDomain d = newDomain();
	ChunkCodec codec(d);
	EXPECT_EQ(codec.domain(), d.id);
	Bytes text = compressibleData(10000, 6);
	ChunkId id = codec.idOf(text);
	EXPECT_EQ(id, codec.idOf(text));
	EXPECT_NE(id, codec.idOf(compressibleData(10000, 7)));

	Bytes blob;
	ASSERT_TRUE(codec.encode(id, ChunkType::IndexPage, text, blob));
	EXPECT_EQ(std::string((const char *)blob.data(), 4), "VSCK");
	auto h = parseBlobHeader(blob);
	ASSERT_TRUE(h) << describe(h);
	EXPECT_EQ(h->type, ChunkType::IndexPage);
	EXPECT_EQ(h->flags, kFlagZstd);
	EXPECT_EQ(blob[5] & 1, 1);
	EXPECT_EQ(blob[6], 0);
	EXPECT_EQ(blob[7], 0);
	EXPECT_EQ(h->domain, d.id);
	EXPECT_EQ(h->id, id);
	EXPECT_EQ(h->rawLength, text.size());
	EXPECT_EQ(h->blobLength(), blob.size());
	EXPECT_LT(h->bodyLength, text.size());

	auto back = codec.decode(id, blob);
	ASSERT_TRUE(back) << describe(back);
	EXPECT_EQ(*back, text);

	// Asked for another id: refused even though the blob is intact.
	ChunkId other = id;
	other[0] ^= 1;
	auto wrong = codec.decode(other, blob);
	ASSERT_FALSE(wrong);
	EXPECT_EQ(wrong.error().code, errc::kCorrupt);

	// Appends: a second blob after the first leaves the first intact.
	Bytes random = randomData(3000, 8);
	ChunkId rid = codec.idOf(random);
	size_t firstLen = blob.size();
	ASSERT_TRUE(codec.encode(rid, ChunkType::Data, random, blob));
	EXPECT_EQ(blob.size(), firstLen + random.size() + kBlobOverhead);
	auto second = codec.decode(rid, std::span(blob).subspan(firstLen));
	ASSERT_TRUE(second) << describe(second);
	EXPECT_EQ(*second, random);
	auto firstAgain = codec.decode(id, std::span(blob).first(firstLen));
	EXPECT_TRUE(firstAgain) << describe(firstAgain);

	// A short or trailing-garbage blob is refused, not read past.
	EXPECT_FALSE(codec.decode(id, std::span(blob).first(firstLen - 1)));
	EXPECT_FALSE(codec.decode(id, std::span(blob).first(firstLen + 1)));
	EXPECT_FALSE(codec.decode(id, std::span(blob).first(10)));
}

} // namespace
} // namespace virtsnap::store::test
