// Pack files and their indexes (FORMAT.md, "Packs and pack indexes").
#pragma once

#include <array>
#include <cstdlib>
#include <memory>
#include <filesystem>
#include <optional>
#include <vector>

#include "chunk_id.h"
#include "core/file_util.h"
#include "key_domain.h"

namespace virtsnap::store {

using PackId = std::array<uint8_t, 16>;

inline constexpr uint64_t kPackHeaderSize = 24;
// Packs close past this size: large enough that a TiB is tens of thousands
// of files, not millions; small enough to upload and rewrite in one piece.
inline constexpr uint64_t kPackTargetSize = 32ull << 20;

struct PackEntry {
	ChunkId id{};
	ChunkType type = ChunkType::Data;
	uint8_t flags = 0;      // the blob's flags (bit0: zstd)
	uint64_t offset = 0;
	uint32_t length = 0;    // whole blob
	uint32_t rawLength = 0; // plaintext
};

struct PackIndex {
	PackId packId{};
	std::vector<PackEntry> entries;
};

fs::path packPath(const fs::path &storeDir, const PackId &id);
fs::path packIndexPath(const fs::path &storeDir, const PackId &id);

Bytes serializePackIndex(const PackIndex &index);
Result<PackIndex> parsePackIndex(std::span<const uint8_t> data);

// Writes one pack under a temporary name; finish() makes the pack and then
// its index durable, in that order. Dropped unfinished, it removes its file.
//
// Where the file system allows it, the pack is written with O_DIRECT
// through an aligned buffer of 1 MiB: a pack is written once and read
// rarely, so the page cache only cost a copy per byte and pages taken from
// the host's own cache (and, on VMs that hand free memory back to the
// host, a page fault each). The file's bytes are the same either way.
class PackWriter
{
public:
	static Result<PackWriter> create(const fs::path &storeDir);

	const PackId &id() const { return index_.packId; }
	uint64_t size() const { return size_; }
	size_t count() const { return index_.entries.size(); }

	Result<void> append(const ChunkId &id, ChunkType type, uint8_t flags, uint32_t rawLength,
			    std::span<const uint8_t> blob);
	// Several blobs, in order, with as few write calls as possible.
	struct Append {
		ChunkId id;
		ChunkType type;
		uint8_t flags;
		uint32_t rawLength;
		std::span<const uint8_t> blob;
	};
	Result<void> appendMany(std::span<const Append> blobs);
	Result<PackIndex> finish(const KeyDomain &domain);

	// Whether the pack is being written with O_DIRECT (for tests).
	bool direct() const { return stage_ != nullptr; }

private:
	struct FreeAligned {
		void operator()(uint8_t *p) const { std::free(p); }
	};

	PackWriter(fs::path storeDir, TempFile file) : storeDir_(std::move(storeDir)), file_(std::move(file)) {}
	Result<void> write(std::span<const uint8_t> bytes);
	// Writes the staged bytes: a full buffer, or at the end the rest,
	// padded to the alignment (finish() then truncates the padding).
	Result<void> flushStage(bool last);
	Result<void> stopDirect();

	fs::path storeDir_;
	TempFile file_;
	PackIndex index_;
	uint64_t size_ = 0;
	std::unique_ptr<uint8_t[], FreeAligned> stage_; // null: buffered writes
	size_t staged_ = 0;
	uint64_t written_ = 0; // bytes in the file (with O_DIRECT: whole blocks)
};

} // namespace virtsnap::store
