// Turns plaintext chunks into blobs and back (FORMAT.md, "Chunks"): keyed
// id, zstd, AES-256-GCM. It holds cipher and compression contexts, so each
// thread uses its own codec.
#pragma once

#include <memory>
#include <span>

#include "chunk_id.h"
#include "core/bytes.h"
#include "core/error.h"
#include "key_domain.h"

namespace virtsnap::store {

inline constexpr size_t kBlobHeaderSize = 68;
inline constexpr size_t kBlobOverhead = kBlobHeaderSize + crypto::kTagSize;

struct BlobHeader {
	ChunkType type = ChunkType::Data;
	bool compressed = false;
	DomainId domain{};
	ChunkId id{};
	uint32_t rawLength = 0;
	uint32_t bodyLength = 0;

	size_t blobLength() const { return kBlobHeaderSize + bodyLength + crypto::kTagSize; }
};

Result<BlobHeader> parseBlobHeader(std::span<const uint8_t> header);

class ChunkCodec
{
public:
	explicit ChunkCodec(const KeyDomain &domain);
	~ChunkCodec();

	const DomainId &domain() const { return domain_; }

	ChunkId idOf(std::span<const uint8_t> plaintext) const;

	// Appends the blob of `plaintext` (whose id is `id`) to `out`.
	Result<void> encode(const ChunkId &id, ChunkType type, std::span<const uint8_t> plaintext, Bytes &out);

	// Opens a whole blob, checking that it is the chunk `expected`.
	Result<Bytes> decode(const ChunkId &expected, std::span<const uint8_t> blob);

private:
	struct Zstd;
	DomainId domain_;
	crypto::Hmac hmac_;
	crypto::Aead aead_;
	std::unique_ptr<Zstd> zstd_;
	Bytes scratch_;
};

} // namespace virtsnap::store
