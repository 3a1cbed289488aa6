#include "ec2_output.h"

#include "core/ids.h"
#include "crypto/crypto.h"

namespace virtsnap::daemon {

namespace {


Json tagsJson(const catalog::Tags &tags)
{
	Json a = Json::array();
	for (const auto &[k, v] : tags) {
		Json t = Json::object();
		t.set("Key", Json::string(k));
		t.set("Value", Json::string(v));
		a.append(t);
	}
	return a;
}

void setIfAny(Json &j, const char *key, const std::string &value)
{
	if (!value.empty())
		j.set(key, Json::string(value));
}

// What every block listing ends with.
void setBlockListing(Json &j, uint64_t volumeSize, engine::TimePoint expiry, const std::optional<uint64_t> &next)
{
	j.set("BlockSize", Json::integer(engine::kBlockSize));
	j.set("VolumeSize", Json::integer(int64_t((volumeSize + kGiB - 1) / kGiB)));
	j.set("ExpiryTime", Json::string(isoTime(expiry)));
	if (next)
		j.set("NextToken", Json::string(engine::blockCursor(*next)));
}

} // namespace

Json productCodesJson(const std::vector<ProductCode> &codes)
{
	Json list = Json::array();
	for (const ProductCode &code : codes) {
		Json c = Json::object();
		c.set("ProductCodeId", Json::string(code.id));
		c.set("ProductCodeType", Json::string(code.type));
		list.append(c);
	}
	return list;
}

namespace {

// The catalog's "ID:TYPE" strings, as EC2 shows them.
Json catalogProductCodesJson(const std::vector<std::string> &texts)
{
	std::vector<ProductCode> codes;
	for (const std::string &text : texts)
		if (auto code = parseProductCode(text))
			codes.push_back(*code);
	return productCodesJson(codes);
}

} // namespace

Json snapshotJson(const catalog::SnapshotRow &r)
{
	Json j = Json::object();
	j.set("SnapshotId", Json::string(r.snapshotId));
	j.set("VolumeId", Json::string(r.volumeId));
	j.set("State", Json::string(name(r.state)));
	setIfAny(j, "StateMessage", r.stateMessage);
	j.set("Progress", Json::string(std::to_string(r.progress) + "%"));
	j.set("StartTime", Json::string(r.startTime));
	setIfAny(j, "CompletionTime", r.completionTime);
	j.set("VolumeSize", Json::integer(int64_t((r.volumeSize + kGiB - 1) / kGiB)));
	j.set("Description", Json::string(r.description));
	setIfAny(j, "Name", r.name);
	j.set("Encrypted", Json::boolean(r.encrypted));
	setIfAny(j, "KmsKeyId", r.kmsKeyId);
	j.set("OwnerId", Json::string(r.ownerId));
	j.set("Tags", tagsJson(r.tags));
	j.set("ProductCodes", catalogProductCodesJson(r.productCodes));
	j.set("ConsistencyLevel", Json::string(r.consistencyLevel));
	if (r.freezeMillis >= 0)
		j.set("FreezeMillis", Json::integer(r.freezeMillis));
	setIfAny(j, "QuiesceNote", r.quiesceNote);
	setIfAny(j, "SnapshotSetId", r.snapshotSetId);
	setIfAny(j, "CaptureMode", r.captureMode);
	setIfAny(j, "CaptureReason", r.captureReason);
	setIfAny(j, "ParentSnapshotId", r.parentSnapshotId);
	j.set("VolumeSizeBytes", Json::integer(int64_t(r.volumeSize)));
	j.set("BytesRead", Json::integer(int64_t(r.bytesRead)));
	j.set("BytesAdded", Json::integer(int64_t(r.bytesAdded)));
	if (!r.sourceSnapshotId.empty()) {
		j.set("SourceSnapshotId", Json::string(r.sourceSnapshotId));
		setIfAny(j, "SourceStore", r.sourceStore);
		j.set("BytesTransferred", Json::integer(int64_t(r.bytesTransferred)));
	}
	j.set("Disk", Json::string(r.diskId));
	j.set("Instance", Json::string(r.instanceName));
	return j;
}

Json volumeJson(const catalog::VolumeRow &v)
{
	Json j = Json::object();
	j.set("VolumeId", Json::string(v.volumeId));
	j.set("Instance", Json::string(v.instanceName));
	j.set("InstanceKey", Json::string(v.instanceKey));
	j.set("Disk", Json::string(v.diskId));
	j.set("Size", Json::integer(int64_t((v.size + kGiB - 1) / kGiB)));
	j.set("SizeBytes", Json::integer(int64_t(v.size)));
	j.set("VolumeClass", Json::string(v.volumeClass));
	j.set("Encrypted", Json::boolean(v.encrypted));
	setIfAny(j, "KmsKeyId", v.kmsKeyId);
	j.set("Tags", tagsJson(v.tags));
	j.set("ProductCodes", catalogProductCodesJson(v.productCodes));
	j.set("BitmapsSuspect", Json::boolean(v.bitmapsSuspect));
	return j;
}

Json snapshotsJson(const std::vector<catalog::SnapshotRow> &rows)
{
	Json list = Json::array();
	for (const catalog::SnapshotRow &r : rows)
		list.append(snapshotJson(r));
	Json doc = Json::object();
	doc.set("Snapshots", list);
	return doc;
}

Reply createdReply(const std::vector<catalog::SnapshotRow> &rows, bool oneDisk)
{
	Reply reply;
	if (oneDisk)
		reply.doc = rows.empty() ? Json() : snapshotJson(rows.front());
	else
		reply.doc = snapshotsJson(rows);
	for (const catalog::SnapshotRow &r : rows)
		if (r.state == SnapshotState::Error) {
			reply.failure = Error{errc::kIncorrectState, "snapshot " + r.snapshotId + " failed: " + r.stateMessage};
			break;
		}
	return reply;
}

Reply verifyReply(const store::VerifyReport &report)
{
	Json list = Json::array();
	std::string damaged;
	for (const auto &snap : report.snapshots) {
		Json j = Json::object();
		j.set("SnapshotId", Json::string(snap.snapshotId));
		j.set("Status", Json::string(snap.ok ? "ok" : "damaged"));
		Json problems = Json::array();
		for (const std::string &p : snap.problems)
			problems.append(Json::string(p));
		j.set("Problems", problems);
		list.append(j);
		if (!snap.ok)
			damaged += (damaged.empty() ? "" : ", ") + snap.snapshotId;
	}
	Json doc = Json::object();
	doc.set("Snapshots", list);
	Reply reply = ok(doc);
	if (!damaged.empty())
		reply.failure = Error{errc::kCorrupt, "damaged snapshots: " + damaged};
	return reply;
}

Json blockListJson(const engine::BlockList &list)
{
	Json blocks = Json::array();
	for (const engine::ListedBlock &b : list.blocks) {
		Json j = Json::object();
		j.set("BlockIndex", Json::integer(int64_t(b.index)));
		j.set("BlockToken", Json::string(b.token));
		blocks.append(j);
	}
	Json doc = Json::object();
	doc.set("Blocks", blocks);
	setBlockListing(doc, list.volumeSize, list.expiry, list.next);
	return doc;
}

Json changedBlocksJson(const engine::ChangedBlockList &list)
{
	Json blocks = Json::array();
	for (const engine::ChangedBlock &b : list.blocks) {
		Json j = Json::object();
		j.set("BlockIndex", Json::integer(int64_t(b.index)));
		// As on EBS: no token on the side where the block is zeros.
		setIfAny(j, "FirstBlockToken", b.firstToken);
		setIfAny(j, "SecondBlockToken", b.secondToken);
		blocks.append(j);
	}
	Json doc = Json::object();
	doc.set("ChangedBlocks", blocks);
	setBlockListing(doc, list.volumeSize, list.expiry, list.next);
	return doc;
}

Json blockDataJson(std::span<const uint8_t> data)
{
	Json j = Json::object();
	j.set("DataLength", Json::integer(int64_t(data.size())));
	j.set("Checksum", Json::string(crypto::base64(crypto::sha256(data))));
	j.set("ChecksumAlgorithm", Json::string("SHA256"));
	return j;
}

Json timeJson(int64_t unixSeconds)
{
	return Json::string(isoTime(std::chrono::system_clock::time_point(std::chrono::seconds(unixSeconds))));
}

Json startedSnapshotJson(const catalog::SnapshotRow &r)
{
	Json j = Json::object();
	j.set("SnapshotId", Json::string(r.snapshotId));
	j.set("OwnerId", Json::string(r.ownerId));
	j.set("Status", Json::string(name(r.state)));
	setIfAny(j, "StateMessage", r.stateMessage);
	j.set("StartTime", Json::string(r.startTime));
	j.set("VolumeSize", Json::integer(int64_t((r.volumeSize + kGiB - 1) / kGiB)));
	j.set("BlockSize", Json::integer(engine::kBlockSize));
	j.set("Description", Json::string(r.description));
	setIfAny(j, "ParentSnapshotId", r.parentSnapshotId);
	j.set("Tags", tagsJson(r.tags));
	j.set("VolumeId", Json::string(r.volumeId));
	return j;
}

Json gcJson(const store::GcReport &report)
{
	Json j = Json::object();
	j.set("DryRun", Json::boolean(report.dryRun));
	j.set("PacksRemoved", Json::integer(int64_t(report.packsRemoved)));
	j.set("PacksRepacked", Json::integer(int64_t(report.packsRepacked)));
	j.set("BytesFreed", Json::integer(int64_t(report.bytesFreed)));
	j.set("TmpFilesRemoved", Json::integer(int64_t(report.tmpFilesRemoved)));
	j.set("SnapshotsHeld", Json::integer(int64_t(report.snapshotsHeld)));
	j.set("RecycledSnapshotsRemoved", Json::integer(int64_t(report.recycledSnapshotsRemoved)));
	return j;
}

} // namespace virtsnap::daemon
