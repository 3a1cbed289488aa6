#include "snapshot_copy.h"

#include <unordered_map>

#include "block_writes.h"
#include "core/cancel.h"
#include "core/ids.h"
#include "store/chunk_writer.h"

namespace virtsnap::engine {

namespace {

// The copy's manifest before its index: EBS gives a copy the fake volume
// vol-ffffffff (ours is kDirectVolumeId), so no capture ever takes a copy
// for a volume's latest snapshot, nor its bitmap for one.
store::Manifest copyManifest(const store::Manifest &src, const CopyRequest &req, const store::Store &source)
{
	store::Manifest m;
	m.snapshotId = req.snapshotId;
	m.volumeId = kDirectVolumeId;
	m.volume = {"", "", "", src.volume.format.empty() ? "raw" : src.volume.format};
	m.startTime = req.startTime.empty() ? isoTimeNow() : req.startTime;
	m.volumeSize = src.volumeSize;
	m.chunkSize = src.chunkSize;
	m.pageEntries = src.pageEntries;
	m.description = req.description.empty() ? defaultCopyDescription(src.snapshotId, req.sourceStoreUrl)
						: req.description;
	m.tags = req.tags;
	m.consistency = src.consistency;
	m.productCodes = src.productCodes; // they follow a volume into its copies
	m.captureMode = "full";
	m.ownerId = req.ownerId;
	m.accountId = req.accountId;
	m.source = {src.snapshotId, source.storeId(), req.sourceStoreUrl};
	return m;
}

bool sameDomain(const store::Store &source, const store::Store &destination, const store::ChunkCodec &sourceCodec,
		const store::KeyDomain &domain)
{
	// Store ids are random: the same id is the same store, so the
	// source's chunks are the destination's.
	return source.storeId() == destination.storeId() && sourceCodec.domain() == domain.id;
}

// Reads and re-seals what the copy needs into `out`, filling `m`'s stats.
Result<void> reseal(store::Store &source, store::Store &destination, const store::KeyDomain &domain,
		    const store::Manifest &src, store::Manifest &m, const ProgressFn &progress,
		    const std::function<bool()> &cancelled)
{
	VS_ASSIGN(auto srcCodec, source.codecOf(src));
	// The destination's compressor: the copy is its chunks.
	store::ChunkCodec dstCodec(domain, destination.compression());
	VS_ASSIGN(store::SnapshotIndex index, store::SnapshotIndex::load(source, *srcCodec, src));
	VS_ASSIGN(auto base, findCopyBase(source, destination, src, domain));
	if (base) {
		m.parentSnapshotId = base->snapshotId;
		m.captureMode = "incremental";
	}
	store::SnapshotIndex out(src.volumeSize, src.chunkSize);
	// Source id -> destination id, for chunks a disk holds more than once:
	// saves their reads only (the writer dedups), so it is bounded
	// (~6 MiB), not one entry per chunk of a huge disk.
	constexpr size_t kRememberedIds = 64 * 1024;
	std::unordered_map<store::ChunkId, store::ChunkId, store::ChunkIdHash> resealed;
	auto writer = destination.newWriter();
	uint64_t transferred = 0;
	for (uint64_t slot = 0; slot < index.slots(); slot++) {
		const store::ChunkId &id = index.at(slot);
		if (progress)
			progress(slot, index.slots());
		if (store::isZeroId(id))
			continue;
		if (base && slot < base->parent.slots() && slot < base->copy.slots() && base->parent.at(slot) == id) {
			out.set(slot, base->copy.at(slot));
			continue;
		}
		if (auto it = resealed.find(id); it != resealed.end()) {
			out.set(slot, it->second);
			continue;
		}
		if (cancelRequested() || (cancelled && cancelled()))
			return fail(errc::kIncorrectState, "copy interrupted at chunk " + std::to_string(slot));
		VS_ASSIGN(Bytes data, source.readChunk(*srcCodec, id));
		transferred += data.size();
		VS_ASSIGN(store::ChunkId copied, writer->put(dstCodec, data, store::ChunkType::Data));
		if (resealed.size() >= kRememberedIds)
			resealed.clear();
		resealed.emplace(id, copied);
		out.set(slot, copied);
	}
	VS_TRY(out.save(*writer, dstCodec, m));
	VS_TRY(writer->commit());
	m.stats.bytesAdded = writer->bytesAdded();
	m.stats.chunksNew = writer->chunksNew();
	m.stats.chunksReused = writer->chunksReused();
	m.stats.bytesTransferred = transferred;
	return {};
}

} // namespace

std::string defaultCopyDescription(const std::string &sourceSnapshotId, const std::string &sourceStoreUrl)
{
	return "[Copied " + sourceSnapshotId + " from " + (sourceStoreUrl.empty() ? "this store" : sourceStoreUrl) + "]";
}

Result<store::Manifest> copySourceOf(store::Store &source, store::Store &destination, const std::string &snapshotId)
{
	VS_ASSIGN(store::Manifest src, source.getManifest(snapshotId));
	if (src.chunkSize != destination.chunkSize())
		return fail(errc::kInvalidParameterValue,
			    snapshotId + " has " + std::to_string(src.chunkSize) + "-byte chunks and " +
				    destination.describe() + " " + std::to_string(destination.chunkSize()) +
				    "-byte ones; a copy does not re-cut chunks");
	return src;
}

std::string copyKmsKeyId(const store::Store &source, const store::Store &destination, const store::Manifest &src,
			 const CopyRequest &request)
{
	if (!src.encrypted && !request.encrypted)
		return "";
	if (!request.kmsKeyId.empty())
		return request.kmsKeyId;
	if (src.encrypted && source.storeId() == destination.storeId() && !src.kmsKeyId.empty())
		return src.kmsKeyId;
	return destination.domain().idHex();
}

Result<const store::KeyDomain *> destinationDomain(store::Store &destination, const std::string &kmsKeyId)
{
	return destination.domain(kmsKeyId);
}

Result<std::optional<CopyBase>> findCopyBase(store::Store &source, store::Store &destination,
					     const store::Manifest &snapshot, const store::KeyDomain &domain)
{
	const std::string defaultKey = destination.domain().idHex();
	auto sealedUnder = [&](const store::Manifest &m) {
		return m.encrypted && !m.kmsKeyId.empty() ? m.kmsKeyId : defaultKey;
	};
	if (snapshot.parentSnapshotId.empty())
		return std::nullopt;
	auto parent = source.getManifest(snapshot.parentSnapshotId);
	if (!parent && parent.error().code == errc::kSnapshotNotFound)
		return std::nullopt; // deleted since: a full copy
	if (!parent)
		return std::unexpected(parent.error());
	VS_ASSIGN(auto manifests, destination.listManifests());
	const store::Manifest *best = nullptr;
	for (const store::Manifest &m : manifests)
		if (m.source.snapshotId == parent->snapshotId && m.source.storeId == source.storeId() &&
		    m.chunkSize == snapshot.chunkSize && sealedUnder(m) == domain.idHex() &&
		    (!best || m.completionTime > best->completionTime))
			best = &m;
	if (!best)
		return std::nullopt;
	VS_ASSIGN(auto srcCodec, source.codecOf(*parent));
	VS_ASSIGN(auto dstCodec, destination.codecOf(*best));
	VS_ASSIGN(store::SnapshotIndex parentIndex, store::SnapshotIndex::load(source, *srcCodec, *parent));
	VS_ASSIGN(store::SnapshotIndex copyIndex, store::SnapshotIndex::load(destination, *dstCodec, *best));
	return CopyBase{best->snapshotId, std::move(parentIndex), std::move(copyIndex)};
}

Result<store::Manifest> copySnapshot(store::Store &source, store::Store &destination, const CopyRequest &request,
				     const ProgressFn &progress, const std::function<bool()> &cancelled)
{
	// Held to the manifest: no gc on either store removes what the copy
	// reads, what it dedups onto, or what it wrote and no manifest names yet.
	VS_ASSIGN(auto destinationLease,
		  destination.lease(store::Lease::Kind::Shared, "copy of " + request.sourceSnapshotId + " into " +
									request.snapshotId));
	std::unique_ptr<store::Lease> sourceLease;
	if (&source != &destination) {
		VS_ASSIGN(sourceLease, source.lease(store::Lease::Kind::Shared, "copy of " + request.sourceSnapshotId));
	}
	VS_ASSIGN(store::Manifest src, copySourceOf(source, destination, request.sourceSnapshotId));
	store::Manifest m = copyManifest(src, request, source);
	// A copy of an encrypted snapshot is encrypted, and so is one asked
	// for with --encrypted, under the key its data is sealed with now.
	m.kmsKeyId = copyKmsKeyId(source, destination, src, request);
	m.encrypted = !m.kmsKeyId.empty();
	VS_ASSIGN(const store::KeyDomain *domainOf, destinationDomain(destination, m.kmsKeyId));
	const store::KeyDomain &domain = *domainOf;
	VS_ASSIGN(auto sourceCodec, source.codecOf(src));
	if (sameDomain(source, destination, *sourceCodec, domain)) {
		m.indexPages = src.indexPages;
		if (progress)
			progress(1, 1);
	} else {
		VS_TRY(reseal(source, destination, domain, src, m, progress, cancelled));
	}
	m.completionTime = isoTimeNow();
	if (!destinationLease->held() || (sourceLease && !sourceLease->held()))
		return fail(errc::kStoreUnavailable, "a lease for the copy could not be renewed in time; " +
							     request.snapshotId + " is not written");
	VS_TRY(destination.putManifest(m));
	return m;
}

} // namespace virtsnap::engine
