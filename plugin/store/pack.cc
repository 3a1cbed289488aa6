#include "pack.h"

#include <cstring>

#include "crypto/crypto.h"

namespace virtsnap::store {

namespace {

constexpr char kPackMagic[8] = {'V', 'S', 'P', 'A', 'C', 'K', '0', '1'};
constexpr size_t kEntrySize = 32 + 4 + 8 + 4 + 4;

std::string packPrefix(const PackId &id)
{
	return "packs/" + toHex(std::span(id).first(1)) + "/" + toHex(id);
}

// Readers allocate an entry's length and read at its offset as they are,
// so an entry must name a blob a pack can hold.
bool plausible(const PackEntry &e)
{
	bool knownType = e.type == ChunkType::Data || e.type == ChunkType::IndexPage;
	bool inPack = e.offset >= kPackHeaderSize && e.offset + e.length > e.offset;
	bool chunkSized = e.length >= kBlobOverhead && e.length - kBlobOverhead <= kMaxChunkSize &&
			  e.rawLength <= kMaxChunkSize;
	return knownType && inPack && chunkSized;
}

} // namespace

std::string packName(const PackId &id)
{
	return packPrefix(id) + ".pack";
}

std::string packIndexName(const PackId &id)
{
	return packPrefix(id) + ".idx";
}

std::optional<PackId> packIdOf(const std::string &objectName, bool *isIndex)
{
	// packs/xx/<32 hex>.pack|.idx, xx the id's first byte
	const std::string dir = "packs/";
	if (objectName.rfind(dir, 0) != 0 || objectName.size() < dir.size() + 3 + 32 + 4)
		return std::nullopt;
	std::string rest = objectName.substr(dir.size());
	bool index = rest.ends_with(".idx");
	if (!index && !rest.ends_with(".pack"))
		return std::nullopt;
	std::string hex = rest.substr(3, 32);
	if (rest[2] != '/' || rest.size() != 3 + 32 + (index ? 4 : 5) || rest.substr(0, 2) != hex.substr(0, 2))
		return std::nullopt;
	auto bytes = fromHex(hex);
	if (!bytes || bytes->size() != 16)
		return std::nullopt;
	PackId id;
	std::memcpy(id.data(), bytes->data(), 16);
	if (isIndex)
		*isIndex = index;
	return id;
}

Bytes serializePackIndex(const PackIndex &index)
{
	Bytes out(16 + 4 + index.entries.size() * kEntrySize);
	uint8_t *p = out.data();
	std::memcpy(p, index.packId.data(), 16);
	putLe32(p + 16, uint32_t(index.entries.size()));
	p += 20;
	for (const PackEntry &e : index.entries) {
		std::memcpy(p, e.id.data(), 32);
		p[32] = uint8_t(e.type);
		p[33] = e.flags;
		p[34] = p[35] = 0;
		putLe64(p + 36, e.offset);
		putLe32(p + 44, e.length);
		putLe32(p + 48, e.rawLength);
		p += kEntrySize;
	}
	return out;
}

Result<PackIndex> parsePackIndex(std::span<const uint8_t> data)
{
	if (data.size() < 20)
		return fail(errc::kCorrupt, "pack index is truncated");
	PackIndex index;
	std::memcpy(index.packId.data(), data.data(), 16);
	uint32_t count = getLe32(data.data() + 16);
	if (data.size() != 20 + size_t(count) * kEntrySize)
		return fail(errc::kCorrupt, "pack index " + toHex(index.packId) + " has a wrong size");
	index.entries.resize(count);
	const uint8_t *p = data.data() + 20;
	for (PackEntry &e : index.entries) {
		std::memcpy(e.id.data(), p, 32);
		e.type = ChunkType(p[32]);
		e.flags = p[33];
		e.offset = getLe64(p + 36);
		e.length = getLe32(p + 44);
		e.rawLength = getLe32(p + 48);
		p += kEntrySize;
		if (!plausible(e))
			return fail(errc::kCorrupt, "pack index " + toHex(index.packId) +
							    " names an impossible blob of chunk " + idHex(e.id));
	}
	return index;
}

Result<PackWriter> PackWriter::create(Backend &backend)
{
	PackId id;
	VS_TRY(crypto::randomBytes(id));
	VS_ASSIGN(auto object, backend.openWriter(packName(id)));
	PackWriter w(backend, std::move(object));
	w.index_.packId = id;
	uint8_t header[kPackHeaderSize];
	std::memcpy(header, kPackMagic, 8);
	std::memcpy(header + 8, id.data(), 16);
	VS_TRY(w.writer_->append(header));
	return w;
}

Result<void> PackWriter::append(const Append &a)
{
	uint64_t offset = writer_->size();
	VS_TRY(writer_->append(a.blob));
	index_.entries.push_back(PackEntry{a.id, a.type, a.flags, offset, uint32_t(a.blob.size()), a.rawLength});
	return {};
}

Result<PackIndex> PackWriter::finish(const KeyDomain &domain)
{
	VS_TRY(writer_->commit());
	VS_ASSIGN(auto sealed, sealObject(ObjectType::PackIndex, domain.id, domain.encKey, toHex(index_.packId),
					  serializePackIndex(index_)));
	VS_TRY(backend_->put(packIndexName(index_.packId), sealed));
	return std::move(index_);
}

Result<void> PackReader::read(uint64_t offset, std::span<uint8_t> out)
{
	return backend_.getRange(packName(id_), offset, out);
}

Result<PackIndex> PackReader::index(const KeyDomain &domain)
{
	std::string name = toHex(id_);
	VS_ASSIGN(auto sealed, backend_.get(packIndexName(id_)));
	VS_ASSIGN(auto plain, openObject(ObjectType::PackIndex, domain.encKey, name, sealed));
	VS_ASSIGN(auto index, parsePackIndex(plain));
	if (index.packId != id_)
		return fail(errc::kCorrupt, "it names pack " + toHex(index.packId));
	return index;
}

Result<std::vector<ChunkId>> PackReader::scanBlobIds()
{
	// Whole: one request, where a read per header would be thousands.
	VS_ASSIGN(Bytes pack, backend_.get(packName(id_)));
	std::vector<ChunkId> ids;
	for (uint64_t off = kPackHeaderSize; off + kBlobHeaderSize <= pack.size();) {
		auto h = parseBlobHeader(std::span(pack).subspan(off, kBlobHeaderSize));
		if (!h)
			break;
		ids.push_back(h->id);
		off += h->blobLength();
	}
	return ids;
}

} // namespace virtsnap::store
