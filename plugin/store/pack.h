// Packs and their indexes (FORMAT.md, "Packs and pack indexes"): the writer
// that makes them and the reader that every part of the store (chunk reads,
// restore's batched reads, gc, verify) reads them with.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <vector>

#include "backend.h"
#include "chunk_codec.h"
#include "chunk_id.h"
#include "key_domain.h"

namespace virtsnap::store {

using PackId = std::array<uint8_t, 16>;

inline constexpr uint64_t kPackHeaderSize = 24;
// Packs close past this size: large enough that a TiB is tens of thousands
// of objects, not millions; small enough to upload and rewrite in one
// piece (a RADOS object takes it in one write).
inline constexpr uint64_t kPackTargetSize = 32ull << 20;

struct PackEntry {
	ChunkId id{};
	ChunkType type = ChunkType::Data;
	uint8_t flags = 0;      // the blob's flags (bit0: zstd, bit1: lz4)
	uint64_t offset = 0;
	uint32_t length = 0;    // whole blob
	uint32_t rawLength = 0; // plaintext
};

struct PackIndex {
	PackId packId{};
	std::vector<PackEntry> entries;
};

// "packs/<xx>/<id>.pack" and ".idx".
std::string packName(const PackId &id);
std::string packIndexName(const PackId &id);
// The pack id of a pack or index object's name, and which of the two it is.
std::optional<PackId> packIdOf(const std::string &objectName, bool *isIndex);

Bytes serializePackIndex(const PackIndex &index);
Result<PackIndex> parsePackIndex(std::span<const uint8_t> data);

// Writes one pack; finish() makes the pack and then its index durable, in
// that order. Dropped unfinished, nothing of it becomes visible.
class PackWriter
{
public:
	static Result<PackWriter> create(Backend &backend);

	const PackId &id() const { return index_.packId; }
	uint64_t size() const { return writer_->size(); }
	size_t count() const { return index_.entries.size(); }

	struct Append {
		ChunkId id;
		ChunkType type;
		uint8_t flags;
		uint32_t rawLength;
		std::span<const uint8_t> blob;
	};
	Result<void> append(const Append &blob);
	Result<PackIndex> finish(const KeyDomain &domain);

private:
	PackWriter(Backend &backend, std::unique_ptr<ObjectWriter> writer)
		: backend_(&backend), writer_(std::move(writer))
	{
	}

	Backend *backend_;
	std::unique_ptr<ObjectWriter> writer_;
	PackIndex index_;
};

// Reads one pack's bytes, blobs and index.
class PackReader
{
public:
	PackReader(Backend &backend, const PackId &id) : backend_(backend), id_(id) {}

	// Raw bytes; may span several blobs.
	Result<void> read(uint64_t offset, std::span<uint8_t> out);
	// The sealed index, opened and checked to name this pack.
	Result<PackIndex> index(const KeyDomain &domain);
	// The ids the blob headers name, from the start up to the first header
	// that does not parse (what lies beyond cannot be found without an
	// index either).
	Result<std::vector<ChunkId>> scanBlobIds();

private:
	Backend &backend_;
	PackId id_;
};

} // namespace virtsnap::store
