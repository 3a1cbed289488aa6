#include "manifest.h"

#include "json/json.h"

namespace virtsnap::store {

namespace {

// Manifest version 2 writes a run of zero index pages as its length, where
// version 1 wrote each as 64 zeros: the manifest of a 16 TiB disk holding a
// few GiB was 17 MB of JSON, and its parsing, hex and writing were most of
// an incremental's CPU there. Written only into stores of format version 3
// (store.cc), and only when there is a run: else version 1.
constexpr int kManifestVersion = 2;
constexpr int kFirstVersionWithZeroRuns = 2;
// A run costs a reader 32 bytes a page whatever the manifest's size, so
// runs are written only up to this many pages (64 TiB, EBS's largest
// volume, at 64 KiB chunks: 32 MiB of ids); a larger index is written as
// version 1, whose text bounds what it costs.
constexpr uint64_t kMaxPagesWithZeroRuns = 1u << 20;

Json str(const std::string &s)
{
	return Json::string(s);
}

Json u64(uint64_t v)
{
	return Json::integer(int64_t(v));
}

// Exactly `count` page ids, or Corrupt; the caller bounds `count` when
// runs may claim it.
Result<std::vector<ChunkId>> parseIndexPages(const Json &pages, bool zeroRuns, uint64_t count)
{
	// Without runs, a page an element: the text bounds the allocation.
	if (!zeroRuns && pages.size() != count)
		return fail(errc::kCorrupt, "manifest's index does not cover the volume");
	std::vector<ChunkId> ids;
	ids.reserve(count);
	for (size_t i = 0; i < pages.size(); i++) {
		Json page = pages.at(i);
		if (zeroRuns && page.isInt()) {
			int64_t run = page.asInt();
			if (run < 1 || uint64_t(run) > count - ids.size())
				return fail(errc::kCorrupt, "manifest's index does not cover the volume");
			ids.resize(ids.size() + size_t(run), kZeroChunk);
			continue;
		}
		auto bytes = fromHex(page.asString());
		if (!bytes || bytes->size() != 32)
			return fail(errc::kCorrupt, "manifest has a malformed index page id");
		if (ids.size() == count)
			return fail(errc::kCorrupt, "manifest's index does not cover the volume");
		ChunkId &id = ids.emplace_back();
		std::copy(bytes->begin(), bytes->end(), id.begin());
	}
	if (ids.size() != count)
		return fail(errc::kCorrupt, "manifest's index does not cover the volume");
	return ids;
}

} // namespace

std::string serializeManifest(const Manifest &m, bool zeroRuns)
{
	Json pages = Json::array();
	const bool mayRun = zeroRuns && m.indexPages.size() <= kMaxPagesWithZeroRuns;
	bool ran = false;
	for (size_t i = 0; i < m.indexPages.size();) {
		size_t end = i;
		while (mayRun && end < m.indexPages.size() && isZeroId(m.indexPages[end]))
			end++;
		if (end > i) {
			pages.append(u64(end - i));
			ran = true;
			i = end;
		} else {
			pages.append(str(idHex(m.indexPages[i++])));
		}
	}
	Json j = Json::object();
	j.set("version", Json::integer(ran ? kManifestVersion : 1));
	j.set("snapshot_id", str(m.snapshotId));
	j.set("volume_id", str(m.volumeId));
	Json vol = Json::object();
	vol.set("instance_key", str(m.volume.instanceKey));
	vol.set("instance_name", str(m.volume.instanceName));
	vol.set("disk_id", str(m.volume.diskId));
	vol.set("format", str(m.volume.format));
	j.set("volume", vol);
	j.set("parent_snapshot_id", str(m.parentSnapshotId));
	j.set("start_time", str(m.startTime));
	j.set("completion_time", str(m.completionTime));
	j.set("volume_size", u64(m.volumeSize));
	j.set("chunk_size", u64(m.chunkSize));
	j.set("page_entries", u64(m.pageEntries));
	j.set("index_pages", pages);
	j.set("description", str(m.description));
	j.set("name", str(m.name));
	Json tags = Json::array();
	for (const auto &[k, v] : m.tags) {
		Json t = Json::object();
		t.set("key", str(k));
		t.set("value", str(v));
		tags.append(t);
	}
	j.set("tags", tags);
	j.set("consistency", str(m.consistency));
	j.set("capture_mode", str(m.captureMode));
	j.set("capture_reason", str(m.captureReason));
	j.set("freeze_ms", Json::integer(m.freezeMillis));
	j.set("quiesce_note", str(m.quiesceNote));
	j.set("snapshot_set_id", str(m.snapshotSetId));
	j.set("owner_id", str(m.ownerId));
	if (!m.accountId.empty())
		j.set("account_id", str(m.accountId));
	j.set("bitmap_name", str(m.bitmapName));
	Json codes = Json::array();
	for (const ProductCode &code : m.productCodes) {
		Json c = Json::object();
		c.set("id", str(code.id));
		c.set("type", str(code.type));
		codes.append(c);
	}
	j.set("product_codes", codes);
	if (m.encrypted) {
		j.set("encrypted", Json::boolean(true));
		j.set("kms_key_id", str(m.kmsKeyId));
	}
	if (!m.source.snapshotId.empty()) {
		Json src = Json::object();
		src.set("snapshot_id", str(m.source.snapshotId));
		src.set("store_id", str(m.source.storeId));
		src.set("store_url", str(m.source.storeUrl));
		j.set("source", src);
	}
	Json st = Json::object();
	st.set("bytes_read", u64(m.stats.bytesRead));
	st.set("bytes_added", u64(m.stats.bytesAdded));
	st.set("chunks_new", u64(m.stats.chunksNew));
	st.set("chunks_reused", u64(m.stats.chunksReused));
	st.set("zero_chunks", u64(m.stats.zeroChunks));
	if (m.stats.bytesTransferred)
		st.set("bytes_transferred", u64(m.stats.bytesTransferred));
	j.set("stats", st);
	return j.dump();
}

Result<Manifest> parseManifest(std::string_view text)
{
	auto parsed = Json::parse(text);
	if (!parsed || !parsed->isObject())
		return fail(errc::kCorrupt, "manifest is not a JSON object");
	const Json &j = *parsed;
	int64_t version = j.getInt("version").value_or(0);
	if (version < 1 || version > kManifestVersion)
		return fail(errc::kCorrupt, "manifest version is not supported");
	Manifest m;
	auto s = [&](const Json &o, const char *k) { return o.getString(k).value_or(""); };
	auto u = [&](const Json &o, const char *k) { return uint64_t(o.getInt(k).value_or(0)); };
	m.snapshotId = s(j, "snapshot_id");
	m.volumeId = s(j, "volume_id");
	Json vol = j.get("volume");
	m.volume = {s(vol, "instance_key"), s(vol, "instance_name"), s(vol, "disk_id"), s(vol, "format")};
	m.parentSnapshotId = s(j, "parent_snapshot_id");
	m.startTime = s(j, "start_time");
	m.completionTime = s(j, "completion_time");
	m.volumeSize = u(j, "volume_size");
	m.chunkSize = uint32_t(u(j, "chunk_size"));
	m.pageEntries = uint32_t(u(j, "page_entries"));
	m.description = s(j, "description");
	m.name = s(j, "name");
	Json tags = j.get("tags");
	for (size_t i = 0; i < tags.size(); i++)
		m.tags.emplace_back(s(tags.at(i), "key"), s(tags.at(i), "value"));
	m.consistency = s(j, "consistency");
	m.captureMode = s(j, "capture_mode");
	m.captureReason = s(j, "capture_reason");
	m.freezeMillis = j.getInt("freeze_ms").value_or(-1);
	m.quiesceNote = s(j, "quiesce_note");
	m.snapshotSetId = s(j, "snapshot_set_id");
	m.ownerId = s(j, "owner_id");
	m.accountId = s(j, "account_id");
	m.bitmapName = s(j, "bitmap_name");
	Json codes = j.get("product_codes");
	for (size_t i = 0; i < codes.size(); i++)
		m.productCodes.push_back({s(codes.at(i), "id"), s(codes.at(i), "type")});
	m.encrypted = j.getBool("encrypted").value_or(false);
	m.kmsKeyId = s(j, "kms_key_id");
	Json st = j.get("stats");
	m.stats = {u(st, "bytes_read"), u(st, "bytes_added"), u(st, "chunks_new"), u(st, "chunks_reused"),
		   u(st, "zero_chunks"), u(st, "bytes_transferred")};
	Json src = j.get("source");
	m.source = {s(src, "snapshot_id"), s(src, "store_id"), s(src, "store_url")};
	for (const char *k : {"volume_size", "chunk_size", "page_entries"})
		if (j.getInt(k).value_or(-1) < 0)
			return fail(errc::kCorrupt, std::string("manifest has a negative or missing ") + k);
	if (m.snapshotId.empty() || m.chunkSize == 0 || m.pageEntries == 0)
		return fail(errc::kCorrupt, "manifest lacks required fields");
	// Readers allocate an id per slot: with the geometry any store has, that
	// is 32 bytes per 32 KiB page, bounded by the manifest's own size in
	// version 1 and by kMaxPagesWithZeroRuns in version 2.
	bool powerOfTwo = (m.chunkSize & (m.chunkSize - 1)) == 0;
	if (!powerOfTwo || m.chunkSize < kMinChunkSize || m.chunkSize > kMaxChunkSize ||
	    m.pageEntries != kIndexPageEntries)
		return fail(errc::kCorrupt, "manifest has a chunk size or page size no store has");
	uint64_t slots = (m.volumeSize + m.chunkSize - 1) / m.chunkSize;
	uint64_t pages = (slots + m.pageEntries - 1) / m.pageEntries;
	bool zeroRuns = version >= kFirstVersionWithZeroRuns;
	if (zeroRuns && pages > kMaxPagesWithZeroRuns)
		return fail(errc::kCorrupt, "manifest's index is too large for its version");
	VS_ASSIGN(m.indexPages, parseIndexPages(j.get("index_pages"), zeroRuns, pages));
	return m;
}

} // namespace virtsnap::store
