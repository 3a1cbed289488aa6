#include "snapshot_retention.h"

#include <cstring>
#include <set>

namespace virtsnap::store {

namespace {

// The packs that hold the snapshot's index pages and chunks, each once.
Result<std::set<PackId>> packsOfSnapshot(Store &store, const Manifest &m)
{
	std::set<PackId> packs;
	auto add = [&](const ChunkId &id) -> Result<void> {
		auto at = store.locate(id);
		if (!at)
			return fail(errc::kCorrupt, "chunk " + toHex(id).substr(0, 16) + " of " + m.snapshotId +
							    " is in no pack of " + store.describe() +
							    " (run virtsnap verify)");
		packs.insert(at->pack);
		return {};
	};
	// Index pages are sealed under the snapshot's own key domain, not
	// necessarily the default one.
	VS_ASSIGN(auto codec, store.codecOf(m));
	for (const ChunkId &pageId : m.indexPages) {
		if (isZeroId(pageId))
			continue;
		VS_TRY(add(pageId));
		VS_ASSIGN(Bytes page, store.readChunk(*codec, pageId));
		if (page.size() % sizeof(ChunkId) != 0)
			return fail(errc::kCorrupt, "an index page of " + m.snapshotId + " has a wrong size");
		for (size_t off = 0; off < page.size(); off += sizeof(ChunkId)) {
			ChunkId id;
			std::memcpy(id.data(), page.data() + off, sizeof(ChunkId));
			if (!isZeroId(id))
				VS_TRY(add(id));
		}
	}
	return packs;
}

} // namespace

Result<size_t> retainSnapshot(Store &store, const Manifest &m, RetentionMode mode,
			      std::chrono::system_clock::time_point until)
{
	VS_ASSIGN(std::set<PackId> packs, packsOfSnapshot(store, m));
	// Without config.json and the key domains nothing of the snapshot
	// opens: the default one seals its manifest, its KMS key's (when it
	// has one) its chunks and index pages. They are kept as long as the lock.
	std::vector<std::string> names = {manifestName(m.snapshotId), kConfigName,
					  keyDomainName(store.domain().idHex())};
	if (m.encrypted && !m.kmsKeyId.empty() && m.kmsKeyId != store.domain().idHex())
		names.push_back(keyDomainName(m.kmsKeyId));
	for (const PackId &pack : packs) {
		names.push_back(packName(pack));
		names.push_back(packIndexName(pack));
	}
	for (const std::string &name : names)
		VS_TRY(store.backend().retain(name, mode, until));
	return names.size();
}

} // namespace virtsnap::store
