#include "block_writes.h"

#include <fcntl.h>
#include <sys/file.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>

#include "core/file_util.h"
#include "core/ids.h"
#include "core/unique_fd.h"
#include "crypto/resource_ids.h"
#include "json/json.h"
#include "store/chunk_writer.h"
#include "store/snapshot_index.h"

namespace virtsnap::engine {

namespace fs = std::filesystem;

namespace {


int64_t epochSeconds(TimePoint t)
{
	return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// Puts of one snapshot record under it; complete and expiry seal under it.
// flock locks belong to the open file, so two threads of virtsnapd exclude
// each other as two processes do.
Result<UniqueFd> lockDir(const fs::path &dir)
{
	UniqueFd fd(::open((dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	if (fd.get() < 0 && errno == ENOENT) // completed (and forgotten) meanwhile
		return fail(errc::kSnapshotNotFound, dir.filename().string() + " is no longer being written");
	if (fd.get() < 0 || ::flock(fd.get(), LOCK_EX) != 0)
		return fail(errc::kIo, "cannot lock " + (dir / "lock").string() + ": " + std::strerror(errno));
	return fd;
}

Result<void> writeText(const fs::path &path, const std::string &text)
{
	return writeFileAtomic(path, std::span((const uint8_t *)text.data(), text.size()), 0600);
}

Result<void> touchActivity(const fs::path &dir, TimePoint now)
{
	return writeText(dir / "activity", std::to_string(epochSeconds(now)));
}

// A block's record: its SHA-256, then the ids of the chunks over it.
struct BlockRecord {
	crypto::Digest checksum{};
	std::vector<store::ChunkId> ids;
};

Bytes encodeRecord(const BlockRecord &r)
{
	Bytes out(r.checksum.begin(), r.checksum.end());
	for (const store::ChunkId &id : r.ids)
		out.insert(out.end(), id.begin(), id.end());
	return out;
}

Result<BlockRecord> decodeRecord(const fs::path &path, size_t slots)
{
	VS_ASSIGN(Bytes bytes, readFile(path));
	if (bytes.size() != crypto::kDigestSize + slots * sizeof(store::ChunkId))
		return fail(errc::kCorrupt, path.string() + " is not a block record of " + std::to_string(slots) + " chunks");
	BlockRecord r;
	std::memcpy(r.checksum.data(), bytes.data(), crypto::kDigestSize);
	r.ids.resize(slots);
	for (size_t i = 0; i < slots; i++)
		std::memcpy(r.ids[i].data(), bytes.data() + crypto::kDigestSize + i * sizeof(store::ChunkId),
			    sizeof(store::ChunkId));
	return r;
}

// Every block put so far, by index.
Result<std::map<uint64_t, BlockRecord>> readRecords(const fs::path &dir, size_t slots)
{
	std::map<uint64_t, BlockRecord> out;
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(dir / "blocks", ec)) {
		std::string name = entry.path().filename().string();
		if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit))
			continue; // a temporary file of a put in flight
		VS_ASSIGN(BlockRecord r, decodeRecord(entry.path(), slots));
		out.emplace(std::stoull(name), std::move(r));
	}
	if (ec && ec != std::errc::no_such_file_or_directory)
		return fail(errc::kIo, "cannot list " + (dir / "blocks").string() + ": " + ec.message());
	return out;
}

Result<crypto::Digest> decodeChecksum(const std::string &checksum)
{
	auto raw = crypto::fromBase64(checksum);
	if (!raw || raw->size() != crypto::kDigestSize)
		return fail(errc::kInvalidParameterValue,
			    "--checksum '" + checksum + "' is not a base64 SHA-256 (44 characters)");
	crypto::Digest d;
	std::copy(raw->begin(), raw->end(), d.begin());
	return d;
}

std::string stateJson(const BlockWrite &w)
{
	Json j = Json::object();
	j.set("snapshot_id", Json::string(w.snapshotId));
	j.set("parent_snapshot_id", Json::string(w.parentSnapshotId));
	j.set("description", Json::string(w.description));
	j.set("owner_id", Json::string(w.ownerId));
	j.set("account_id", Json::string(w.accountId));
	j.set("encrypted", Json::boolean(w.encrypted));
	j.set("kms_key_id", Json::string(w.kmsKeyId));
	j.set("start_time", Json::string(w.startTime));
	j.set("volume_size", Json::integer(int64_t(w.volumeSize)));
	j.set("timeout_minutes", Json::integer(w.timeout.count()));
	j.set("state", Json::string(name(w.state)));
	j.set("state_message", Json::string(w.stateMessage));
	Json tags = Json::array();
	for (const auto &[k, v] : w.tags)
		tags.append(Json::array().append(Json::string(k)).append(Json::string(v)));
	j.set("tags", tags);
	return j.dump();
}

Result<BlockWrite> parseState(const std::string &text, const fs::path &where)
{
	auto j = Json::parse(text);
	auto state = j ? snapshotStateNamed(j->getString("state").value_or("")) : std::nullopt;
	if (!j || !state || !j->getInt("volume_size"))
		return fail(errc::kCorrupt, where.string() + " is not the state of a snapshot being written");
	BlockWrite w;
	w.snapshotId = j->getString("snapshot_id").value_or("");
	w.parentSnapshotId = j->getString("parent_snapshot_id").value_or("");
	w.description = j->getString("description").value_or("");
	w.ownerId = j->getString("owner_id").value_or("");
	w.accountId = j->getString("account_id").value_or("");
	w.encrypted = j->getBool("encrypted").value_or(false);
	w.kmsKeyId = j->getString("kms_key_id").value_or("");
	w.startTime = j->getString("start_time").value_or("");
	w.volumeSize = uint64_t(*j->getInt("volume_size"));
	w.timeout = std::chrono::minutes(j->getInt("timeout_minutes").value_or(kDefaultWriteTimeout.count()));
	w.state = *state;
	w.stateMessage = j->getString("state_message").value_or("");
	Json tags = j->get("tags");
	for (size_t i = 0; i < tags.size(); i++)
		w.tags.emplace_back(tags.at(i).at(0).asString(), tags.at(i).at(1).asString());
	return w;
}

} // namespace

std::string linearAggregate(const std::vector<crypto::Digest> &blockChecksums)
{
	Bytes all;
	for (const crypto::Digest &d : blockChecksums)
		all.insert(all.end(), d.begin(), d.end());
	crypto::Digest sum = crypto::sha256(all);
	return crypto::base64(sum);
}

BlockWrites::BlockWrites(const fs::path &stateDir) : root_(stateDir / "block-writes") {}

Result<BlockWrite> BlockWrites::load(const std::string &snapshotId) const
{
	fs::path file = dirOf(snapshotId) / "state.json";
	auto bytes = readFile(file);
	if (!bytes && bytes.error().code == errc::kObjectNotFound)
		return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId +
							     " is not being written on this host (start-snapshot makes one)");
	if (!bytes) {
		std::error_code ec;
		if (!fs::exists(file, ec))
			return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId +
								     " is not being written on this host (start-snapshot makes one)");
		return std::unexpected(bytes.error());
	}
	return parseState(std::string(bytes->begin(), bytes->end()), file);
}

Result<void> BlockWrites::save(const BlockWrite &w) const
{
	return writeText(dirOf(w.snapshotId) / "state.json", stateJson(w));
}

Result<std::optional<BlockWrite>> BlockWrites::find(const std::string &snapshotId) const
{
	auto w = load(snapshotId);
	if (!w && w.error().code == errc::kSnapshotNotFound)
		return std::nullopt;
	VS_TRY(w);
	return std::optional(std::move(*w));
}

Result<BlockWrites::Locked> BlockWrites::lockedWrite(const std::string &snapshotId) const
{
	VS_TRY(checkSnapshotId(snapshotId));
	VS_TRY(load(snapshotId));
	VS_ASSIGN(UniqueFd lock, lockDir(dirOf(snapshotId)));
	VS_ASSIGN(BlockWrite w, load(snapshotId));
	return Locked{std::move(w), std::move(lock)};
}

Result<TimePoint> BlockWrites::deadline(const BlockWrite &w) const
{
	VS_ASSIGN(Bytes text, readFile(dirOf(w.snapshotId) / "activity"));
	int64_t last = std::atoll(std::string(text.begin(), text.end()).c_str());
	return TimePoint(std::chrono::seconds(last)) + w.timeout;
}

Result<void> BlockWrites::endInError(BlockWrite &w, const std::string &why) const
{
	w.state = SnapshotState::Error;
	w.stateMessage = why;
	VS_TRY(save(w));
	// Without their records, the blocks' chunks are pinned no more: the
	// next gc reclaims what no manifest names.
	std::error_code ec;
	fs::remove_all(dirOf(w.snapshotId) / "blocks", ec);
	return {};
}

Result<void> BlockWrites::checkPending(BlockWrite &w, TimePoint now) const
{
	if (w.state == SnapshotState::Pending) {
		VS_ASSIGN(TimePoint end, deadline(w));
		if (now < end)
			return {};
		VS_TRY(endInError(w, "not completed within its timeout of " + std::to_string(w.timeout.count()) +
				       " minutes after its last block"));
	}
	return fail(errc::kIncorrectState, "snapshot " + w.snapshotId + " is " + name(w.state) +
							     (w.stateMessage.empty() ? "" : " (" + w.stateMessage + ")") +
							     ", not pending");
}

Result<BlockWrite> BlockWrites::start(store::Store &store, const StartRequest &request, TimePoint now)
{
	if (request.volumeSizeGiB < 1 || request.volumeSizeGiB > kMaxWriteVolumeGiB)
		return fail(errc::kInvalidParameterValue, "--volume-size " + std::to_string(request.volumeSizeGiB) +
								  " must be from 1 to " + std::to_string(kMaxWriteVolumeGiB) +
								  " GiB");
	if (store.chunkSize() > kBlockSize)
		return fail(errc::kInvalidParameterValue,
			    "the store's chunks are " + std::to_string(store.chunkSize() >> 10) +
				    " KiB; block writes need chunks of at most 512 KiB, so that a block is whole chunks");
	BlockWrite w;
	w.volumeSize = request.volumeSizeGiB * kGiB;
	if (!request.parentSnapshotId.empty()) {
		VS_TRY(checkSnapshotId(request.parentSnapshotId));
		VS_ASSIGN(store::Manifest parent, store.getManifest(request.parentSnapshotId));
		if (parent.volumeSize > w.volumeSize)
			return fail(errc::kInvalidParameterValue,
				    "--volume-size " + std::to_string(request.volumeSizeGiB) + " GiB is smaller than parent " +
					    parent.snapshotId + " (" + std::to_string(parent.volumeSize) + " bytes)");
		// Its unchanged blocks are the parent's chunk ids, keyed by
		// the parent's key domain.
		if ((request.encrypted && !parent.encrypted) ||
		    (!request.kmsKeyId.empty() && request.kmsKeyId != parent.kmsKeyId))
			return fail(errc::kInvalidParameterValue,
				    "a snapshot with a parent is sealed under the parent's key (" +
					    (parent.encrypted ? parent.kmsKeyId : std::string("none: it is unencrypted")) +
					    "): give no --encrypted or --kms-key-id");
		w.encrypted = parent.encrypted;
		w.kmsKeyId = parent.kmsKeyId;
	} else if (request.encrypted) {
		VS_TRY(store.domain(request.kmsKeyId));
		w.encrypted = true;
		w.kmsKeyId = request.kmsKeyId;
	}
	VS_ASSIGN(w.snapshotId, newResourceId("snap-"));
	w.parentSnapshotId = request.parentSnapshotId;
	w.description = request.description;
	w.tags = request.tags;
	w.ownerId = request.ownerId;
	w.accountId = request.accountId;
	w.timeout = request.timeout;
	w.startTime = isoTime(now);
	fs::path dir = dirOf(w.snapshotId);
	VS_TRY(makeDirs(dir / "blocks", 0700));
	VS_TRY(touchActivity(dir, now));
	VS_TRY(save(w));
	return w;
}

namespace {

// One block, refused before anything is stored unless it is one.
Result<BlockRecord> checkBlock(const BlockWrite &w, const BlockPut &p)
{
	uint64_t count = blockCount(w.volumeSize);
	if (p.block >= count)
		return fail(errc::kInvalidParameterValue, "--block-index " + std::to_string(p.block) +
								  " is out of range: snapshot " + w.snapshotId +
								  " has blocks 0 to " + std::to_string(count - 1));
	if (p.data.size() != kBlockSize)
		return fail(errc::kInvalidParameterValue, "the block has " + std::to_string(p.data.size()) +
								  " bytes; every block is 524288");
	VS_ASSIGN(crypto::Digest expected, decodeChecksum(p.checksum));
	BlockRecord record{crypto::sha256(p.data), {}};
	if (record.checksum != expected)
		return fail(errc::kInvalidParameterValue, "--checksum does not match the block's data (its SHA-256 is " +
								  crypto::base64(record.checksum) + "); nothing was stored");
	return record;
}

// The block's chunks through `writer`; their ids into `record`.
Result<void> storeChunks(store::ChunkWriter &writer, store::ChunkCodec &codec, uint32_t chunkSize,
			 std::span<const uint8_t> data, BlockRecord &record)
{
	for (uint64_t off = 0; off < kBlockSize; off += chunkSize) {
		auto chunk = data.subspan(off, chunkSize);
		if (isAllZero(chunk)) {
			record.ids.push_back(store::kZeroChunk);
			continue;
		}
		VS_ASSIGN(store::ChunkId id, writer.put(codec, chunk, store::ChunkType::Data));
		record.ids.push_back(id);
	}
	return {};
}

} // namespace

Result<void> BlockWrites::put(store::Store &store, const std::string &snapshotId, uint64_t block,
			      std::span<const uint8_t> data, const std::string &checksum, TimePoint now)
{
	return putBlocks(store, snapshotId, {BlockPut{block, data, checksum}}, now);
}

Result<void> BlockWrites::putBlocks(store::Store &store, const std::string &snapshotId,
				    const std::vector<BlockPut> &blocks, TimePoint now)
{
	fs::path dir = dirOf(snapshotId);
	BlockWrite w;
	{
		VS_ASSIGN(Locked locked, lockedWrite(snapshotId));
		VS_TRY(checkPending(locked.write, now));
		w = std::move(locked.write);
	}
	std::vector<BlockRecord> records;
	for (const BlockPut &p : blocks) {
		VS_ASSIGN(BlockRecord r, checkBlock(w, p));
		records.push_back(std::move(r));
	}
	// gc must not remove a chunk these puts found by dedup before they are
	// recorded: from then on pinnedChunks() names it. One writer for the
	// batch, so that an import fills packs rather than making one a block.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "block put into " + snapshotId));
	auto writer = store.newWriter();
	// A child of an encrypted snapshot is sealed under its parent's key.
	VS_ASSIGN(const store::KeyDomain *domain, store.domain(w.encrypted ? w.kmsKeyId : std::string()));
	auto codec = std::make_unique<store::ChunkCodec>(*domain, store.compression());
	for (size_t i = 0; i < blocks.size(); i++)
		VS_TRY(storeChunks(*writer, *codec, store.chunkSize(), blocks[i].data, records[i]));
	VS_TRY(writer->commit());
	if (!lease->held())
		return fail(errc::kStoreUnavailable, "the lease on " + store.describe() +
							     " could not be renewed in time; the blocks were not recorded");
	VS_ASSIGN(Locked locked, lockedWrite(snapshotId));
	VS_TRY(checkPending(locked.write, now));
	for (size_t i = 0; i < blocks.size(); i++)
		VS_TRY(writeFileAtomic(dir / "blocks" / std::to_string(blocks[i].block), encodeRecord(records[i]), 0600));
	return touchActivity(dir, now);
}

Result<void> BlockWrites::abandon(const std::string &snapshotId, const std::string &why)
{
	VS_ASSIGN(Locked locked, lockedWrite(snapshotId));
	if (locked.write.state != SnapshotState::Pending)
		return {};
	return endInError(locked.write, why);
}

Result<void> BlockWrites::forget(const std::string &snapshotId)
{
	VS_TRY(checkSnapshotId(snapshotId));
	VS_ASSIGN(auto found, find(snapshotId));
	if (!found)
		return {};
	// Under its lock: no put is half recorded. Its state may still say
	// pending when the row says error (a crash between the two): the row
	// is what the user deleted.
	VS_ASSIGN(UniqueFd lock, lockDir(dirOf(snapshotId)));
	std::error_code ec;
	fs::remove_all(dirOf(snapshotId), ec);
	if (ec)
		return fail(errc::kIo, "removing " + dirOf(snapshotId).string() + ": " + ec.message());
	return {};
}

Result<std::vector<BlockWrite>> BlockWrites::list() const
{
	std::vector<BlockWrite> out;
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(root_, ec)) {
		std::string id = entry.path().filename().string();
		if (!isSnapshotId(id))
			continue;
		auto w = find(id);
		VS_TRY(w);
		if (*w)
			out.push_back(**w);
	}
	if (ec && ec != std::errc::no_such_file_or_directory)
		return fail(errc::kIo, "cannot list " + root_.string() + ": " + ec.message());
	return out;
}

Result<void> BlockWrites::forEachPending(
	const std::function<Result<void>(const fs::path &dir, BlockWrite &w)> &visit) const
{
	std::error_code ec;
	for (const auto &entry : fs::directory_iterator(root_, ec)) {
		std::string id = entry.path().filename().string();
		if (!isSnapshotId(id))
			continue;
		auto lock = lockDir(entry.path());
		if (!lock && lock.error().code == errc::kSnapshotNotFound)
			continue;
		VS_TRY(lock);
		auto w = load(id);
		if (!w || w->state != SnapshotState::Pending)
			continue; // completed meanwhile, or already failed
		VS_TRY(visit(entry.path(), *w));
	}
	if (ec && ec != std::errc::no_such_file_or_directory)
		return fail(errc::kIo, "cannot list " + root_.string() + ": " + ec.message());
	return {};
}

Result<std::vector<BlockWrite>> BlockWrites::expire(TimePoint now)
{
	std::vector<BlockWrite> out;
	VS_TRY(forEachPending([&](const fs::path &, BlockWrite &w) -> Result<void> {
		if (!checkPending(w, now))
			out.push_back(w);
		return {};
	}));
	return out;
}

Result<std::vector<store::ChunkId>> BlockWrites::pinnedChunks(uint32_t chunkSize) const
{
	std::vector<store::ChunkId> out;
	VS_TRY(forEachPending([&](const fs::path &dir, BlockWrite &) -> Result<void> {
		VS_ASSIGN(auto records, readRecords(dir, kBlockSize / chunkSize));
		for (const auto &[block, r] : records)
			for (const store::ChunkId &c : r.ids)
				if (!store::isZeroId(c))
					out.push_back(c);
		return {};
	}));
	return out;
}

namespace {

// The parent's slots, then the put blocks' over them. A parent whose last
// chunk is short (its disk ended mid-chunk) and that the new volume
// outgrows has that chunk stored again, padded, as the longer slot needs.
Result<store::SnapshotIndex> buildIndex(store::Store &store, const BlockWrite &w,
					const std::map<uint64_t, BlockRecord> &records, store::ChunkWriter &writer,
					store::ChunkCodec &codec)
{
	store::SnapshotIndex index(w.volumeSize, store.chunkSize());
	if (!w.parentSnapshotId.empty()) {
		VS_ASSIGN(store::Manifest pm, store.getManifest(w.parentSnapshotId));
		VS_ASSIGN(store::SnapshotIndex parent, store::SnapshotIndex::load(store, codec, pm));
		if (parent.chunkSize() != index.chunkSize())
			return fail(errc::kCorrupt, "parent " + pm.snapshotId + " has chunks of another size");
		for (uint64_t slot = 0; slot < parent.slots(); slot++) {
			store::ChunkId id = parent.at(slot);
			if (!store::isZeroId(id) && parent.slotLength(slot) != index.slotLength(slot)) {
				VS_ASSIGN(Bytes plain, store.readChunk(codec, id));
				plain.resize(index.slotLength(slot), 0);
				VS_ASSIGN(id, writer.put(codec, plain, store::ChunkType::Data));
			}
			index.set(slot, id);
		}
	}
	uint64_t perBlock = kBlockSize / store.chunkSize();
	for (const auto &[block, r] : records)
		for (uint64_t i = 0; i < perBlock; i++)
			index.set(block * perBlock + i, r.ids[i]);
	return index;
}

// Why the blocks put do not make the snapshot asked for, or "".
std::string mismatch(const std::map<uint64_t, BlockRecord> &records, uint64_t changedBlocks,
		     const std::string &aggregate)
{
	if (records.size() != changedBlocks)
		return "--changed-blocks-count " + std::to_string(changedBlocks) + " does not match the " +
		       std::to_string(records.size()) + " blocks put";
	if (aggregate.empty())
		return "";
	std::vector<crypto::Digest> sums;
	for (const auto &[block, r] : records)
		sums.push_back(r.checksum);
	std::string actual = linearAggregate(sums);
	if (actual != aggregate)
		return "--checksum " + aggregate + " does not match the LINEAR aggregate of the blocks put (" +
		       actual + ")";
	return "";
}

store::Manifest manifestOf(const BlockWrite &w, TimePoint now)
{
	store::Manifest m;
	m.snapshotId = w.snapshotId;
	m.volumeId = kDirectVolumeId;
	m.volume = {"", "", "", "raw"};
	m.parentSnapshotId = w.parentSnapshotId;
	m.startTime = w.startTime;
	m.completionTime = isoTime(now);
	m.volumeSize = w.volumeSize;
	m.description = w.description;
	m.tags = w.tags;
	m.ownerId = w.ownerId;
	m.accountId = w.accountId;
	m.encrypted = w.encrypted;
	m.kmsKeyId = w.kmsKeyId;
	m.captureMode = "direct";
	return m;
}

} // namespace

Result<CompleteOutcome> BlockWrites::complete(store::Store &store, const std::string &snapshotId,
					      uint64_t changedBlocks, const std::string &aggregate, TimePoint now)
{
	fs::path dir = dirOf(snapshotId);
	// Held to the end: no put records a block while the snapshot seals.
	VS_ASSIGN(Locked locked, lockedWrite(snapshotId));
	BlockWrite &w = locked.write;
	VS_TRY(checkPending(w, now));
	VS_ASSIGN(auto records, readRecords(dir, kBlockSize / store.chunkSize()));
	if (std::string why = mismatch(records, changedBlocks, aggregate); !why.empty()) {
		VS_TRY(endInError(w, why));
		return CompleteOutcome{SnapshotState::Error, why, {}};
	}
	// Taking the lease refreshes the chunk map: a chunk gc removed
	// elsewhere meanwhile is then known to be gone.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "completion of " + snapshotId));
	for (const auto &[block, r] : records)
		for (const store::ChunkId &id : r.ids)
			if (!store::isZeroId(id) && !store.contains(id)) {
				std::string why = "block " + std::to_string(block) +
						  " is gone from the store (a gc that did not know of this write)";
				VS_TRY(endInError(w, why));
				return CompleteOutcome{SnapshotState::Error, why, {}};
			}
	auto writer = store.newWriter();
	// A child of an encrypted snapshot is sealed under its parent's key.
	VS_ASSIGN(const store::KeyDomain *domain, store.domain(w.encrypted ? w.kmsKeyId : std::string()));
	auto codec = std::make_unique<store::ChunkCodec>(*domain, store.compression());
	VS_ASSIGN(store::SnapshotIndex index, buildIndex(store, w, records, *writer, *codec));
	store::Manifest m = manifestOf(w, now);
	VS_TRY(index.save(*writer, *codec, m));
	VS_TRY(writer->commit());
	m.stats.bytesAdded = writer->bytesAdded();
	m.stats.chunksNew = writer->chunksNew();
	if (!lease->held())
		return fail(errc::kStoreUnavailable, "the lease on " + store.describe() +
							     " could not be renewed in time; " + snapshotId +
							     " is still pending");
	VS_TRY(store.putManifest(m));
	// The manifest is the snapshot now; what stays here is only bookkeeping.
	std::error_code ec;
	fs::remove_all(dir, ec);
	return CompleteOutcome{SnapshotState::Completed, "", std::move(m)};
}

} // namespace virtsnap::engine
