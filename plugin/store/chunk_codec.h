// Turns plaintext chunks into blobs and back (FORMAT.md, "Chunks"): keyed
// id, compression (the store's choice: zstd, lz4 or none), AES-256-GCM. It
// holds cipher and compression contexts, made once and reused for every
// chunk, so each thread uses its own codec.
#pragma once

#include <memory>
#include <span>

#include "chunk_id.h"
#include "compression.h"
#include "core/bytes.h"
#include "core/error.h"
#include "key_domain.h"

namespace virtsnap::store {

inline constexpr size_t kBlobHeaderSize = 68;
inline constexpr size_t kBlobOverhead = kBlobHeaderSize + crypto::kTagSize;

// The header's flags: how the body was compressed (at most one bit set).
inline constexpr uint8_t kFlagZstd = 1;
inline constexpr uint8_t kFlagLz4 = 2;

struct BlobHeader {
	ChunkType type = ChunkType::Data;
	uint8_t flags = 0;
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
	// `compression` is what encode uses; decode reads every method.
	explicit ChunkCodec(const KeyDomain &domain, Compression compression = {});
	~ChunkCodec();

	const DomainId &domain() const { return domain_; }

	ChunkId idOf(std::span<const uint8_t> plaintext) const;

	// Appends the blob of `plaintext` (whose id is `id`) to `out`. The body
	// is compressed when the chunk does not look random
	// (compressibility.h) and compression makes it smaller.
	Result<void> encode(const ChunkId &id, ChunkType type, std::span<const uint8_t> plaintext, Bytes &out);

	// Opens a whole blob, checking that it is the chunk `expected`.
	Result<Bytes> decode(const ChunkId &expected, std::span<const uint8_t> blob);
	// The same, the plaintext in `buffer`, which only ever grows: a caller
	// that keeps it from chunk to chunk (restore) allocates and clears
	// nothing per chunk. The span returned lives in `buffer`.
	Result<std::span<const uint8_t>> decode(const ChunkId &expected, std::span<const uint8_t> blob,
						Bytes &buffer);

private:
	struct Contexts;
	// The compressed body in scratch_, or 0 when it would be no smaller.
	size_t compress(std::span<const uint8_t> plaintext);

	DomainId domain_;
	Compression compression_;
	crypto::Hmac hmac_;
	crypto::Aead aead_;
	std::unique_ptr<Contexts> contexts_;
	Bytes scratch_; // a compressed body: made by encode, opened by decode
};

} // namespace virtsnap::store
