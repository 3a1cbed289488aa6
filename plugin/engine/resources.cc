#include "resources.h"


#include <functional>

#include "block_writes.h"
#include "core/ids.h"
#include "json/json.h"

namespace virtsnap::engine {

namespace {

Json tagsJson(const store::Tags &tags)
{
	Json a = Json::array();
	for (const auto &[k, v] : tags) {
		Json t = Json::object();
		t.set("key", Json::string(k));
		t.set("value", Json::string(v));
		a.append(t);
	}
	return a;
}

store::Tags tagsFrom(const Json &a)
{
	store::Tags tags;
	for (size_t i = 0; i < a.size(); i++)
		tags.emplace_back(a.at(i).getString("key").value_or(""), a.at(i).getString("value").value_or(""));
	return tags;
}

Result<VolumeRecord> requireVolume(store::Store &store, const std::string &volumeId)
{
	VS_ASSIGN(auto v, loadVolume(store, volumeId));
	if (!v)
		return fail(errc::kVolumeNotFound, "volume " + volumeId + " is not known here");
	return *v;
}

} // namespace

void mergeTags(store::Tags &into, const store::Tags &add)
{
	for (const auto &[k, v] : add) {
		auto it = std::find_if(into.begin(), into.end(), [&](const auto &t) { return t.first == k; });
		if (it != into.end())
			it->second = v;
		else
			into.emplace_back(k, v);
	}
}

void removeTags(store::Tags &from, const store::Tags &remove)
{
	for (const auto &[k, v] : remove)
		std::erase_if(from, [&](const auto &t) { return t.first == k && (v.empty() || t.second == v); });
}

Result<std::optional<VolumeRecord>> loadVolume(store::Store &store, const std::string &volumeId)
{
	VS_ASSIGN(auto text, store.getRecord("volumes", volumeId));
	if (!text)
		return std::optional<VolumeRecord>();
	auto j = Json::parse(*text);
	if (!j)
		return fail(errc::kCorrupt, "volume record " + volumeId + " is not JSON");
	VolumeRecord v;
	v.volumeId = volumeId;
	v.instanceKey = j->getString("instance_key").value_or("");
	v.instanceName = j->getString("instance_name").value_or("");
	v.diskId = j->getString("disk_id").value_or("");
	v.size = uint64_t(j->getInt("size").value_or(0));
	v.volumeClass = j->getString("volume_class").value_or("standard");
	v.tags = tagsFrom(j->get("tags"));
	v.encrypted = j->getBool("encrypted").value_or(false);
	v.kmsKeyId = j->getString("kms_key_id").value_or("");
	Json codes = j->get("product_codes");
	for (size_t i = 0; i < codes.size(); i++) {
		auto code = parseProductCode(codes.at(i).asString());
		if (!code)
			return fail(errc::kCorrupt, "volume record " + volumeId + ": " + code.error().message);
		v.productCodes.push_back(*code);
	}
	return std::optional<VolumeRecord>(v);
}

Result<void> saveVolume(store::Store &store, const VolumeRecord &v)
{
	Json j = Json::object();
	j.set("volume_id", Json::string(v.volumeId));
	j.set("instance_key", Json::string(v.instanceKey));
	j.set("instance_name", Json::string(v.instanceName));
	j.set("disk_id", Json::string(v.diskId));
	j.set("size", Json::integer(int64_t(v.size)));
	j.set("volume_class", Json::string(v.volumeClass));
	j.set("tags", tagsJson(v.tags));
	if (v.encrypted) {
		j.set("encrypted", Json::boolean(true));
		j.set("kms_key_id", Json::string(v.kmsKeyId));
	}
	if (!v.productCodes.empty()) {
		Json codes = Json::array();
		for (const ProductCode &code : v.productCodes)
			codes.append(Json::string(toString(code)));
		j.set("product_codes", codes);
	}
	return store.putRecord("volumes", v.volumeId, j.dump());
}

Result<std::vector<VolumeRecord>> listVolumes(store::Store &store)
{
	VS_ASSIGN(auto ids, store.listRecordIds("volumes"));
	std::vector<VolumeRecord> out;
	for (const std::string &id : ids) {
		VS_ASSIGN(auto v, loadVolume(store, id));
		if (v)
			out.push_back(*v);
	}
	return out;
}

Result<std::optional<VolumeRecord>> giveVolumeProductCodes(store::Store &store, const store::Manifest &m)
{
	if (m.productCodes.empty() || m.volumeId == kDirectVolumeId || !isVolumeId(m.volumeId))
		return std::optional<VolumeRecord>();
	VS_ASSIGN(auto known, loadVolume(store, m.volumeId));
	VolumeRecord v = known.value_or(VolumeRecord{m.volumeId, m.volume.instanceKey, m.volume.instanceName,
						     m.volume.diskId, m.volumeSize, "standard", {}, m.encrypted, m.kmsKeyId, {}});
	const size_t had = v.productCodes.size();
	addProductCodes(v.productCodes, m.productCodes);
	if (known && v.productCodes.size() == had)
		return std::optional<VolumeRecord>();
	VS_TRY(saveVolume(store, v));
	return std::optional<VolumeRecord>(std::move(v));
}

Result<std::optional<InstanceRecord>> loadInstance(store::Store &store, const std::string &instanceId)
{
	VS_ASSIGN(auto text, store.getRecord("instances", instanceId));
	if (!text)
		return std::optional<InstanceRecord>();
	auto j = Json::parse(*text);
	if (!j)
		return fail(errc::kCorrupt, "instance record " + instanceId + " is not JSON");
	InstanceRecord r;
	r.instanceId = instanceId;
	r.instanceKey = j->getString("instance_key").value_or("");
	r.name = j->getString("name").value_or("");
	r.hibernationEnabled = j->getBool("hibernation_enabled").value_or(false);
	Json codes = j->get("product_codes");
	for (size_t i = 0; i < codes.size(); i++) {
		auto code = parseProductCode(codes.at(i).asString());
		if (!code)
			return fail(errc::kCorrupt, "instance record " + instanceId + ": " + code.error().message);
		r.productCodes.push_back(*code);
	}
	return std::optional<InstanceRecord>(r);
}

Result<void> saveInstance(store::Store &store, const InstanceRecord &r)
{
	Json j = Json::object();
	j.set("instance_id", Json::string(r.instanceId));
	j.set("instance_key", Json::string(r.instanceKey));
	j.set("name", Json::string(r.name));
	j.set("hibernation_enabled", Json::boolean(r.hibernationEnabled));
	Json codes = Json::array();
	for (const ProductCode &code : r.productCodes)
		codes.append(Json::string(toString(code)));
	j.set("product_codes", codes);
	return store.putRecord("instances", r.instanceId, j.dump());
}

namespace {

// Applies `change` to the tags of a snap- or vol- id and stores the result.
Result<void> editTags(store::Store &store, const std::string &resourceId,
		      const std::function<void(store::Tags &)> &change)
{
	if (isSnapshotId(resourceId)) {
		VS_ASSIGN(auto m, store.getManifest(resourceId));
		change(m.tags);
		return store.putManifest(m, true);
	}
	if (isVolumeId(resourceId)) {
		VS_ASSIGN(auto v, requireVolume(store, resourceId));
		change(v.tags);
		return saveVolume(store, v);
	}
	return fail(errc::kInvalidParameterValue, "'" + resourceId + "' is neither a snap- nor a vol- id");
}

} // namespace

Result<void> createTags(store::Store &store, const std::string &resourceId, const store::Tags &tags)
{
	return editTags(store, resourceId, [&](store::Tags &t) { mergeTags(t, tags); });
}

Result<void> deleteTags(store::Store &store, const std::string &resourceId, const store::Tags &tags)
{
	return editTags(store, resourceId, [&](store::Tags &t) { removeTags(t, tags); });
}

Result<void> replaceTags(store::Store &store, const std::string &resourceId, const store::Tags &tags)
{
	return editTags(store, resourceId, [&](store::Tags &t) { t = tags; });
}

Result<store::Tags> parseTags(const std::vector<std::string> &specs, bool valuesOptional)
{
	store::Tags tags;
	for (const std::string &s : specs) {
		auto eq = s.find('=');
		if ((eq == std::string::npos && !valuesOptional) || eq == 0 || s.empty())
			return fail(errc::kInvalidParameterValue, "tag '" + s + "' is not KEY=VALUE");
		std::string key = s.substr(0, eq);
		std::string value = eq == std::string::npos ? "" : s.substr(eq + 1);
		if (key.size() > 128 || value.size() > 256)
			return fail(errc::kInvalidParameterValue, "tag '" + key + "' is too long (key 128, value 256)");
		if (key.rfind("aws:", 0) == 0)
			return fail(errc::kInvalidParameterValue, "tag keys starting with aws: are reserved");
		for (const auto &[k, v] : tags)
			if (k == key)
				return fail(errc::kInvalidParameterValue, "tag key '" + key + "' is given twice");
		tags.emplace_back(key, value);
	}
	return tags;
}

} // namespace virtsnap::engine
