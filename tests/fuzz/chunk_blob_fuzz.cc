// Chunk blobs: the header as read from a pack, a whole blob as found, and a
// blob sealed here around the input so that decode's decompression sees an
// arbitrary body with an arbitrary raw length that authenticated.
#include <cstring>

#include "store/chunk_codec.h"
#include "store_fuzz_util.h"

using namespace virtsnap;
using store::kBlobHeaderSize;

namespace {

// The input's first 5 bytes choose type, compression and raw length; the
// rest is the body. Header layout: FORMAT.md, "Chunks".
Bytes sealedBlob(std::span<const uint8_t> input, store::ChunkId &id)
{
	const store::KeyDomain &domain = fuzz::testDomain();
	std::span<const uint8_t> body = input.subspan(5);
	Bytes blob(kBlobHeaderSize, 0);
	std::memcpy(blob.data(), "VSCK", 4);
	blob[4] = uint8_t(input[0] & 2 ? store::ChunkType::IndexPage : store::ChunkType::Data);
	blob[5] = input[0] & 1;
	std::memcpy(blob.data() + 8, domain.id.data(), domain.id.size());
	id = crypto::sha256(body);
	std::memcpy(blob.data() + 16, id.data(), id.size());
	std::memcpy(blob.data() + 48, input.data() + 1, 4);
	putLe32(blob.data() + 52, uint32_t(body.size()));
	crypto::Nonce nonce{};
	Bytes aad(blob);
	fuzz::check(crypto::Aead(domain.encKey).seal(nonce, aad, body, blob).has_value(), "sealing works");
	return blob;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::span<const uint8_t> input(data, size);
	// One codec for the process: its zstd contexts are costly to make.
	static store::ChunkCodec codec(fuzz::testDomain());
	if (auto header = store::parseBlobHeader(input))
		(void)codec.decode(header->id, input);
	if (size < 5)
		return 0;

	store::ChunkId id;
	Bytes blob = sealedBlob(input, id);
	auto header = store::parseBlobHeader(blob);
	fuzz::check(header.has_value() == (getLe32(data + 1) <= store::kMaxChunkSize),
		    "a sealed blob's header parses unless it claims too much");
	fuzz::check(!header || header->blobLength() == blob.size(), "a sealed blob's header has its length");
	if (auto plain = codec.decode(id, blob))
		fuzz::check(plain->size() == header->rawLength, "a decoded chunk has its raw length");

	// And the way a chunk goes in: what is encoded decodes to itself.
	std::span<const uint8_t> body = input.subspan(5);
	Bytes encoded;
	store::ChunkId bodyId = codec.idOf(body);
	fuzz::check(codec.encode(bodyId, store::ChunkType::Data, body, encoded).has_value(), "encoding works");
	auto back = codec.decode(bodyId, encoded);
	fuzz::check(back && *back == Bytes(body.begin(), body.end()), "an encoded chunk decodes to itself");
	return 0;
}
