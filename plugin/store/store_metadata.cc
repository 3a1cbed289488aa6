// The store's small objects: manifests (one per snapshot) and records.
#include <algorithm>

#include "store.h"

namespace virtsnap::store {

namespace {

// Ids become object names: only plain names, never a path.
bool isPlainName(const std::string &s)
{
	return !s.empty() && s.size() <= 128 &&
	       s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos;
}

const std::string kManifests = "snapshots/";
const std::string kManifestSuffix = ".manifest";
const std::string kRecordSuffix = ".json.sealed";

// The names under `prefix` that end in `suffix`, without either, sorted.
Result<std::vector<std::string>> listNames(Backend &backend, const std::string &prefix, const std::string &suffix)
{
	std::vector<std::string> out;
	VS_TRY(backend.list(prefix, [&](const ObjectInfo &info) {
		std::string rest = info.name.substr(prefix.size());
		if (rest.size() > suffix.size() && rest.ends_with(suffix) && rest.find('/') == std::string::npos)
			out.push_back(rest.substr(0, rest.size() - suffix.size()));
	}));
	std::sort(out.begin(), out.end());
	return out;
}

} // namespace

std::string manifestName(const std::string &snapshotId)
{
	return kManifests + snapshotId + kManifestSuffix;
}

std::string recordName(const std::string &kind, const std::string &id)
{
	return "records/" + kind + "/" + id + kRecordSuffix;
}

Result<void> Store::putManifest(const Manifest &m, bool overwrite)
{
	if (!isPlainName(m.snapshotId))
		return fail(errc::kSnapshotIdMalformed, "'" + m.snapshotId + "' is not a snapshot id");
	std::string json = serializeManifest(m, manifestZeroRuns_);
	VS_ASSIGN(auto sealed, sealObject(ObjectType::Manifest, domain_.id, domain_.encKey, m.snapshotId,
					  std::span((const uint8_t *)json.data(), json.size())));
	if (overwrite)
		return backend_->put(manifestName(m.snapshotId), sealed);
	auto made = backend_->create(manifestName(m.snapshotId), sealed);
	if (!made && made.error().code == errc::kObjectExists)
		return fail(errc::kTargetExists, "snapshot " + m.snapshotId + " already has a manifest");
	return made;
}

Result<Manifest> Store::getManifest(const std::string &snapshotId) const
{
	if (!isPlainName(snapshotId))
		return fail(errc::kSnapshotIdMalformed, "'" + snapshotId + "' is not a snapshot id");
	auto sealed = backend_->get(manifestName(snapshotId));
	if (!sealed) {
		if (sealed.error().code == errc::kObjectNotFound)
			return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " does not exist");
		return std::unexpected(sealed.error());
	}
	auto plain = openObject(ObjectType::Manifest, domain_.encKey, snapshotId, *sealed);
	if (!plain)
		return fail(errc::kCorrupt, "manifest of " + snapshotId + ": " + plain.error().message);
	auto m = parseManifest(std::string_view((const char *)plain->data(), plain->size()));
	if (!m)
		return fail(errc::kCorrupt, "manifest of " + snapshotId + ": " + m.error().message);
	if (m->snapshotId != snapshotId)
		return fail(errc::kCorrupt, "manifest of " + snapshotId + " names " + m->snapshotId);
	return m;
}

Result<std::vector<std::string>> Store::listManifestIds() const
{
	return listNames(*backend_, kManifests, kManifestSuffix);
}

Result<std::vector<Manifest>> Store::listManifests() const
{
	VS_ASSIGN(auto ids, listManifestIds());
	std::vector<Manifest> out;
	for (const std::string &id : ids) {
		auto m = getManifest(id);
		if (!m) {
			// Deleted between listing and reading: not an error.
			if (m.error().code == errc::kSnapshotNotFound)
				continue;
			return std::unexpected(m.error());
		}
		out.push_back(std::move(*m));
	}
	std::sort(out.begin(), out.end(), [](const Manifest &a, const Manifest &b) {
		return std::tie(a.startTime, a.snapshotId) < std::tie(b.startTime, b.snapshotId);
	});
	return out;
}

Result<void> Store::deleteManifest(const std::string &snapshotId)
{
	if (!isPlainName(snapshotId))
		return fail(errc::kSnapshotIdMalformed, "'" + snapshotId + "' is not a snapshot id");
	std::string name = manifestName(snapshotId);
	auto there = backend_->stat(name);
	if (!there) {
		if (there.error().code == errc::kObjectNotFound)
			return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " does not exist");
		return std::unexpected(there.error());
	}
	return backend_->remove(name);
}

Result<void> Store::putRecord(const std::string &kind, const std::string &id, const std::string &json)
{
	if (!isPlainName(kind) || !isPlainName(id))
		return fail(errc::kInvalidParameterValue, "'" + kind + "/" + id + "' is not a record name");
	VS_ASSIGN(auto sealed, sealObject(ObjectType::Record, domain_.id, domain_.encKey, kind + "/" + id,
					  std::span((const uint8_t *)json.data(), json.size())));
	return backend_->put(recordName(kind, id), sealed);
}

Result<void> Store::createRecord(const std::string &kind, const std::string &id, const std::string &json)
{
	if (!isPlainName(kind) || !isPlainName(id))
		return fail(errc::kInvalidParameterValue, "'" + kind + "/" + id + "' is not a record name");
	VS_ASSIGN(auto sealed, sealObject(ObjectType::Record, domain_.id, domain_.encKey, kind + "/" + id,
					  std::span((const uint8_t *)json.data(), json.size())));
	return backend_->create(recordName(kind, id), sealed);
}

Result<std::optional<std::string>> Store::getRecord(const std::string &kind, const std::string &id) const
{
	if (!isPlainName(kind) || !isPlainName(id))
		return fail(errc::kInvalidParameterValue, "'" + kind + "/" + id + "' is not a record name");
	auto sealed = backend_->get(recordName(kind, id));
	if (!sealed) {
		if (sealed.error().code == errc::kObjectNotFound)
			return std::optional<std::string>();
		return std::unexpected(sealed.error());
	}
	auto plain = openObject(ObjectType::Record, domain_.encKey, kind + "/" + id, *sealed);
	if (!plain)
		return fail(errc::kCorrupt, "record " + kind + "/" + id + ": " + plain.error().message);
	return std::optional<std::string>(std::string(plain->begin(), plain->end()));
}

Result<std::vector<std::string>> Store::listRecordIds(const std::string &kind) const
{
	if (!isPlainName(kind))
		return fail(errc::kInvalidParameterValue, "'" + kind + "' is not a record kind");
	return listNames(*backend_, "records/" + kind + "/", kRecordSuffix);
}

Result<void> Store::removeRecord(const std::string &kind, const std::string &id)
{
	if (!isPlainName(kind) || !isPlainName(id))
		return fail(errc::kInvalidParameterValue, "'" + kind + "/" + id + "' is not a record name");
	return backend_->remove(recordName(kind, id));
}

} // namespace virtsnap::store
