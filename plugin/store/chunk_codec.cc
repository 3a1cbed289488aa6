#include "chunk_codec.h"

#include <zstd.h>

#include <cstring>

namespace virtsnap::store {

namespace {

constexpr char kBlobMagic[4] = {'V', 'S', 'C', 'K'};
constexpr int kZstdLevel = 1;

void writeHeader(const BlobHeader &h, const crypto::Nonce &nonce, uint8_t *p)
{
	std::memcpy(p, kBlobMagic, 4);
	p[4] = uint8_t(h.type);
	p[5] = h.compressed ? 1 : 0;
	p[6] = p[7] = 0;
	std::memcpy(p + 8, h.domain.data(), 8);
	std::memcpy(p + 16, h.id.data(), 32);
	putLe32(p + 48, h.rawLength);
	putLe32(p + 52, h.bodyLength);
	std::memcpy(p + 56, nonce.data(), nonce.size());
}

} // namespace

struct ChunkCodec::Zstd {
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	~Zstd()
	{
		ZSTD_freeCCtx(cctx);
		ZSTD_freeDCtx(dctx);
	}
};

Result<BlobHeader> parseBlobHeader(std::span<const uint8_t> p)
{
	if (p.size() < kBlobHeaderSize || std::memcmp(p.data(), kBlobMagic, 4) != 0)
		return fail(errc::kCorrupt, "not a chunk header");
	BlobHeader h;
	if (p[4] != uint8_t(ChunkType::Data) && p[4] != uint8_t(ChunkType::IndexPage))
		return fail(errc::kCorrupt, "unknown chunk type " + std::to_string(p[4]));
	h.type = ChunkType(p[4]);
	h.compressed = p[5] & 1;
	std::memcpy(h.domain.data(), p.data() + 8, 8);
	std::memcpy(h.id.data(), p.data() + 16, 32);
	h.rawLength = getLe32(p.data() + 48);
	h.bodyLength = getLe32(p.data() + 52);
	// decode allocates the raw length; no store has chunks past
	// kMaxChunkSize, and a stored body is never longer than its chunk (it
	// is compressed only when that makes it shorter).
	if (h.rawLength > kMaxChunkSize || h.bodyLength > kMaxChunkSize)
		return fail(errc::kCorrupt, "chunk header claims " + std::to_string(h.rawLength) + " bytes");
	return h;
}

ChunkCodec::ChunkCodec(const KeyDomain &domain)
	: domain_(domain.id), hmac_(domain.idKey), aead_(domain.encKey), zstd_(std::make_unique<Zstd>())
{
}

ChunkCodec::~ChunkCodec() = default;

ChunkId ChunkCodec::idOf(std::span<const uint8_t> plaintext) const
{
	return hmac_.digest(plaintext);
}

Result<void> ChunkCodec::encode(const ChunkId &id, ChunkType type, std::span<const uint8_t> plaintext, Bytes &out)
{
	scratch_.resize(ZSTD_compressBound(plaintext.size()));
	size_t n = ZSTD_compressCCtx(zstd_->cctx, scratch_.data(), scratch_.size(), plaintext.data(),
				     plaintext.size(), kZstdLevel);
	bool compressed = !ZSTD_isError(n) && n < plaintext.size();
	std::span<const uint8_t> body = compressed ? std::span<const uint8_t>(scratch_.data(), n) : plaintext;

	BlobHeader h{type, compressed, domain_, id, uint32_t(plaintext.size()), uint32_t(body.size())};
	crypto::Nonce nonce;
	VS_TRY(crypto::randomBytes(nonce));
	size_t start = out.size();
	out.resize(start + kBlobHeaderSize);
	writeHeader(h, nonce, out.data() + start);
	Bytes aad(out.begin() + long(start), out.end());
	return aead_.seal(nonce, aad, body, out);
}

Result<Bytes> ChunkCodec::decode(const ChunkId &expected, std::span<const uint8_t> blob)
{
	VS_ASSIGN(auto h, parseBlobHeader(blob));
	if (h.id != expected)
		return fail(errc::kCorrupt, "blob holds chunk " + idHex(h.id) + ", not " + idHex(expected));
	if (h.domain != domain_)
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + " was sealed with key domain " +
						    toHex(h.domain) + ", not " + toHex(domain_));
	if (blob.size() != h.blobLength())
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + " has a wrong length");
	crypto::Nonce nonce;
	std::memcpy(nonce.data(), blob.data() + 56, nonce.size());
	Bytes body;
	auto opened = aead_.open(nonce, blob.first(kBlobHeaderSize), blob.subspan(kBlobHeaderSize), body);
	if (!opened)
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + ": " + opened.error().message);
	if (!h.compressed) {
		if (body.size() != h.rawLength)
			return fail(errc::kCorrupt, "chunk " + idHex(expected) + " has a wrong raw length");
		return body;
	}
	Bytes plain(h.rawLength);
	size_t n = ZSTD_decompressDCtx(zstd_->dctx, plain.data(), plain.size(), body.data(), body.size());
	if (ZSTD_isError(n) || n != h.rawLength)
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + " does not decompress");
	return plain;
}

} // namespace virtsnap::store
