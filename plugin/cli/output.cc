#include "output.h"

#include <algorithm>
#include <cstdio>

namespace virtsnap::cli {

using qmp::Json;

namespace {

std::string cell(const Json &v)
{
	if (v.isNull())
		return "-";
	if (v.isString())
		return v.asString();
	if (v.isArray()) {
		// Tags: "k=v,k=v"
		std::string out;
		for (size_t i = 0; i < v.size(); i++) {
			Json t = v.at(i);
			out += (i ? "," : "") + t.getString("Key").value_or("") + "=" + t.getString("Value").value_or("");
		}
		return out.empty() ? "-" : out;
	}
	return v.dump();
}

} // namespace

Json snapshotJson(const store::Manifest &m, const std::string &state, const std::string &stateMessage)
{
	constexpr uint64_t kGiB = 1ull << 30;
	Json j = Json::object();
	j.set("SnapshotId", Json::string(m.snapshotId));
	j.set("VolumeId", Json::string(m.volumeId));
	j.set("State", Json::string(state));
	if (!stateMessage.empty())
		j.set("StateMessage", Json::string(stateMessage));
	j.set("Progress", Json::string(state == "completed" ? "100%" : "0%"));
	j.set("StartTime", Json::string(m.startTime));
	j.set("CompletionTime", Json::string(m.completionTime));
	j.set("VolumeSize", Json::integer(int64_t((m.volumeSize + kGiB - 1) / kGiB)));
	j.set("Description", Json::string(m.description));
	if (!m.name.empty())
		j.set("Name", Json::string(m.name));
	j.set("Encrypted", Json::boolean(true));
	Json tags = Json::array();
	for (const auto &[k, v] : m.tags) {
		Json t = Json::object();
		t.set("Key", Json::string(k));
		t.set("Value", Json::string(v));
		tags.append(t);
	}
	j.set("Tags", tags);
	j.set("ConsistencyLevel", Json::string(m.consistency));
	if (m.freezeMillis >= 0)
		j.set("FreezeMillis", Json::integer(m.freezeMillis));
	if (!m.quiesceNote.empty())
		j.set("QuiesceNote", Json::string(m.quiesceNote));
	if (!m.snapshotSetId.empty())
		j.set("SnapshotSetId", Json::string(m.snapshotSetId));
	j.set("CaptureMode", Json::string(m.captureMode));
	if (!m.captureReason.empty())
		j.set("CaptureReason", Json::string(m.captureReason));
	if (!m.parentSnapshotId.empty())
		j.set("ParentSnapshotId", Json::string(m.parentSnapshotId));
	j.set("VolumeSizeBytes", Json::integer(int64_t(m.volumeSize)));
	j.set("BytesRead", Json::integer(int64_t(m.stats.bytesRead)));
	j.set("BytesAdded", Json::integer(int64_t(m.stats.bytesAdded)));
	j.set("Disk", Json::string(m.volume.diskId));
	j.set("Instance", Json::string(m.volume.instanceName));
	return j;
}

void print(OutputFormat format, const Json &doc, const std::string &listKey, const std::vector<std::string> &columns)
{
	if (format == OutputFormat::Json) {
		std::printf("%s\n", doc.dump(true).c_str());
		return;
	}
	if (listKey.empty()) {
		for (const std::string &k : doc.keys())
			std::printf("%-18s %s\n", k.c_str(), cell(doc.get(k)).c_str());
		return;
	}
	Json rows = doc.get(listKey);
	std::vector<size_t> width;
	for (const std::string &c : columns)
		width.push_back(c.size());
	for (size_t r = 0; r < rows.size(); r++)
		for (size_t c = 0; c < columns.size(); c++)
			width[c] = std::max(width[c], cell(rows.at(r).get(columns[c])).size());
	auto line = [&](auto valueOf) {
		std::string out;
		for (size_t c = 0; c < columns.size(); c++) {
			std::string v = valueOf(c);
			out += v + std::string(c + 1 < columns.size() ? width[c] - v.size() + 2 : 0, ' ');
		}
		std::printf("%s\n", out.c_str());
	};
	line([&](size_t c) { return columns[c]; });
	for (size_t r = 0; r < rows.size(); r++)
		line([&](size_t c) { return cell(rows.at(r).get(columns[c])); });
}

} // namespace virtsnap::cli
