#include "chunk_codec.h"

#include <lz4.h>
#include <zstd.h>

#include <cstring>

#include "compressibility.h"

namespace virtsnap::store {

namespace {

constexpr char kBlobMagic[4] = {'V', 'S', 'C', 'K'};

void writeHeader(const BlobHeader &h, const crypto::Nonce &nonce, uint8_t *p)
{
	std::memcpy(p, kBlobMagic, 4);
	p[4] = uint8_t(h.type);
	p[5] = h.flags;
	p[6] = p[7] = 0;
	std::memcpy(p + 8, h.domain.data(), 8);
	std::memcpy(p + 16, h.id.data(), 32);
	putLe32(p + 48, h.rawLength);
	putLe32(p + 52, h.bodyLength);
	std::memcpy(p + 56, nonce.data(), nonce.size());
}

} // namespace

struct ChunkCodec::Contexts {
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	// lz4's compression state, kept so that no chunk allocates one.
	std::unique_ptr<uint8_t[]> lz4State;
	~Contexts()
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
	h.flags = p[5];
	if (h.flags != 0 && h.flags != kFlagZstd && h.flags != kFlagLz4)
		return fail(errc::kCorrupt, "chunk header has unknown flags " + std::to_string(h.flags));
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

ChunkCodec::ChunkCodec(const KeyDomain &domain, Compression compression)
	: domain_(domain.id), compression_(compression), hmac_(domain.idKey), aead_(domain.encKey),
	  contexts_(std::make_unique<Contexts>())
{
	if (compression_.method == Compression::Method::Lz4)
		contexts_->lz4State = std::make_unique_for_overwrite<uint8_t[]>(size_t(LZ4_sizeofState()));
}

ChunkCodec::~ChunkCodec() = default;

ChunkId ChunkCodec::idOf(std::span<const uint8_t> plaintext) const
{
	return hmac_.digest(plaintext);
}

size_t ChunkCodec::compress(std::span<const uint8_t> plaintext)
{
	if (compression_.method == Compression::Method::None || !worthCompressing(plaintext))
		return 0;
	size_t n = 0;
	if (compression_.method == Compression::Method::Lz4) {
		scratch_.resize(size_t(LZ4_compressBound(int(plaintext.size()))));
		int r = LZ4_compress_fast_extState(contexts_->lz4State.get(), (const char *)plaintext.data(),
						   (char *)scratch_.data(), int(plaintext.size()), int(scratch_.size()), 1);
		n = r > 0 ? size_t(r) : 0;
	} else {
		scratch_.resize(ZSTD_compressBound(plaintext.size()));
		n = ZSTD_compressCCtx(contexts_->cctx, scratch_.data(), scratch_.size(), plaintext.data(),
				      plaintext.size(), compression_.level);
		if (ZSTD_isError(n))
			n = 0;
	}
	return n < plaintext.size() ? n : 0;
}

Result<void> ChunkCodec::encode(const ChunkId &id, ChunkType type, std::span<const uint8_t> plaintext, Bytes &out)
{
	size_t n = compress(plaintext);
	std::span<const uint8_t> body = n ? std::span<const uint8_t>(scratch_.data(), n) : plaintext;
	uint8_t flags = 0;
	if (n)
		flags = compression_.method == Compression::Method::Lz4 ? kFlagLz4 : kFlagZstd;

	BlobHeader h{type, flags, domain_, id, uint32_t(plaintext.size()), uint32_t(body.size())};
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
	Bytes plain;
	VS_ASSIGN(auto opened, decode(expected, blob, plain));
	plain.resize(opened.size());
	return plain;
}

Result<std::span<const uint8_t>> ChunkCodec::decode(const ChunkId &expected, std::span<const uint8_t> blob,
						    Bytes &buffer)
{
	VS_ASSIGN(auto h, parseBlobHeader(blob));
	if (h.id != expected)
		return fail(errc::kCorrupt, "blob holds chunk " + idHex(h.id) + ", not " + idHex(expected));
	if (h.domain != domain_)
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + " was sealed with key domain " +
						    toHex(h.domain) + ", not " + toHex(domain_));
	if (blob.size() != h.blobLength())
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + " has a wrong length");
	if (h.flags == 0 && h.bodyLength != h.rawLength)
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + " has a wrong raw length");
	crypto::Nonce nonce;
	std::memcpy(nonce.data(), blob.data() + 56, nonce.size());
	// Grown, never shrunk: resize() zero-fills what it adds.
	auto room = [](Bytes &b, size_t n) {
		if (b.size() < n)
			b.resize(n);
		return std::span<uint8_t>(b.data(), n);
	};
	std::span<uint8_t> body = room(h.flags == 0 ? buffer : scratch_, h.bodyLength);
	auto opened = aead_.open(nonce, blob.first(kBlobHeaderSize), blob.subspan(kBlobHeaderSize), body);
	if (!opened)
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + ": " + opened.error().message);
	if (h.flags == 0)
		return std::span<const uint8_t>(body);
	std::span<uint8_t> plain = room(buffer, h.rawLength);
	bool whole = false;
	if (h.flags == kFlagLz4) {
		int n = LZ4_decompress_safe((const char *)body.data(), (char *)plain.data(), int(body.size()),
					    int(plain.size()));
		whole = n >= 0 && uint32_t(n) == h.rawLength;
	} else {
		size_t n = ZSTD_decompressDCtx(contexts_->dctx, plain.data(), plain.size(), body.data(), body.size());
		whole = !ZSTD_isError(n) && n == h.rawLength;
	}
	if (!whole)
		return fail(errc::kCorrupt, "chunk " + idHex(expected) + " does not decompress");
	return std::span<const uint8_t>(plain);
}

} // namespace virtsnap::store
