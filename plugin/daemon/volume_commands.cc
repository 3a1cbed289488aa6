// create-volume, the tags of snapshots and volumes, register-instance,
// describe-volumes and modify-volume.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iostream>

#include "access.h"
#include "catalog/catalog.h"
#include "catalog_rows.h"
#include "core/file_util.h"
#include "core/ids.h"
#include "crypto/resource_ids.h"
#include "driver_cache.h"
#include "ec2_output.h"
#include "engine/image_product_codes.h"
#include "engine/kms_keys.h"
#include "engine/resources.h"
#include "engine/restore.h"
#include "handlers.h"
#include "requests.h"
#include "store/store.h"

namespace virtsnap::daemon {

namespace {

namespace fs = std::filesystem;

// "0644"
std::string modeText(mode_t mode)
{
	char text[8];
	std::snprintf(text, sizeof text, "%04o", unsigned(mode & 07777));
	return text;
}

// The catalog's row of a volume after its record changed, keeping how its
// instance is reached.
Result<void> syncVolume(Context &ctx, const engine::VolumeRecord &v)
{
	VS_ASSIGN(auto existing, ctx.catalog->getVolume(v.volumeId));
	return ctx.catalog->putVolume(volumeRow(v, existing ? existing->target : ""));
}

// create-volume --domain/--qmp-socket --disk: the disk's latest completed
// snapshot unless one is named, into a new file beside its image unless
// --target says.
Result<void> resolveInstanceDisk(Context &ctx, const Arguments &args, std::string &id, std::string &target)
{
	VS_ASSIGN(std::string disk, args.require("disk"));
	VS_ASSIGN(hypervisor::Target instanceTarget, parseTarget(args, ctx.options.libvirtUri));
	VS_ASSIGN(auto driver, ctx.drivers->get(instanceTarget));
	VS_ASSIGN(hypervisor::InstanceInfo instance, driver->instance());
	VS_ASSIGN(hypervisor::DiskInfo info, driver->disk(disk));
	std::string volumeId = volumeIdFor(instance.key, info.diskId);
	if (id.empty()) {
		VS_ASSIGN(catalog::Page page, ctx.catalog->describeSnapshots(
						      {{"volume-id", {volumeId}}, {"status", {"completed"}}}, {}, 0, ""));
		if (page.snapshots.empty())
			return fail(errc::kSnapshotNotFound, "disk " + disk + " of " + driver->describe() + " (" +
								     volumeId + ") has no completed snapshot");
		id = page.snapshots.back().snapshotId; // by start time: the latest last
	}
	if (target.empty()) {
		fs::path image = info.filename;
		std::string format = args.get("format", "qcow2");
		target = (image.parent_path() / (image.stem().string() + "-" + id + "." + format)).string();
	}
	return {};
}

Result<Reply> changeTags(Context &ctx, const Call &call, bool create)
{
	VS_ASSIGN(std::string resource, call.args.require("resource"));
	if (!call.args.has("tag"))
		return fail(errc::kMissingParameter, "--tag is required");
	VS_ASSIGN(store::Tags tags, engine::parseTags(call.args.all("tag"), !create));
	auto change = [&] {
		return create ? engine::createTags(*ctx.store, resource, tags) : engine::deleteTags(*ctx.store, resource, tags);
	};
	if (isSnapshotId(resource)) {
		VS_TRY(ownedSnapshot(ctx, call, resource)); // tags are the owner's to change
		VS_TRY(ctx.catalog->transaction([&]() -> Result<void> {
			VS_ASSIGN(auto row, ctx.catalog->getSnapshot(resource));
			if (!row)
				return fail(errc::kSnapshotNotFound, "snapshot " + resource + " does not exist");
			// A pending snapshot has no manifest yet: as on EBS its tags
			// change all the same, in its row, and the job writes them
			// into the manifest when it completes (CreateJob::finish).
			if (row->state == SnapshotState::Pending) {
				if (create)
					engine::mergeTags(row->tags, tags);
				else
					engine::removeTags(row->tags, tags);
				return ctx.catalog->putSnapshot(*row);
			}
			if (row->state != SnapshotState::Completed)
				return fail(errc::kIncorrectState,
					    "snapshot " + resource + " is " + name(row->state) + " and has no tags to change");
			VS_TRY(change());
			VS_ASSIGN(store::Manifest m, ctx.store->getManifest(resource));
			row->tags = m.tags;
			return ctx.catalog->putSnapshot(*row);
		}));
	} else if (isVolumeId(resource)) {
		VS_TRY(change());
		auto v = engine::loadVolume(*ctx.store, resource);
		if (v && *v)
			VS_TRY(syncVolume(ctx, **v));
	} else {
		return fail(errc::kInvalidParameterValue, "'" + resource + "' is neither a snap- nor a vol- id");
	}
	Json j = Json::object();
	j.set("Resource", Json::string(resource));
	return ok(j);
}

} // namespace

Result<std::optional<engine::LuksSettings>> encryptionSecret(Context &ctx, const Call &call)
{
	const std::string option = "--encryption-secret-file";
	if (!call.args.has("encryption-secret-file"))
		return std::optional<engine::LuksSettings>();
	const std::string path = call.args.get("encryption-secret-file");
	VS_ASSIGN(UniqueFd fd, openAsCaller(option, path, call.uid));
	struct stat st;
	if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
		return fail(errc::kInvalidParameterValue, option + " " + path + " is not a regular file");
	uid_t caller = ::geteuid();
	if (!call.uid.empty()) {
		auto [end, ec] = std::from_chars(call.uid.data(), call.uid.data() + call.uid.size(), caller);
		if (ec != std::errc() || end != call.uid.data() + call.uid.size())
			return fail(errc::kInternal, "the caller '" + call.uid + "' is not a uid");
	}
	if ((st.st_mode & 077) != 0)
		return fail(errc::kInvalidParameterValue, option + " " + path + " may be read by others (mode " +
								  modeText(st.st_mode) + "); make it 0600");
	if (st.st_uid != caller && st.st_uid != 0)
		return fail(errc::kAccessDenied, option + " " + path + " belongs to uid " + std::to_string(st.st_uid) +
							 ", not to the caller or root");
	if (st.st_size < 1 || st.st_size > 4096)
		return fail(errc::kInvalidParameterValue, option + " " + path + " must hold 1 to 4096 bytes");
	std::string secret(size_t(st.st_size), '\0');
	VS_TRY(preadAll(fd.get(), std::span(reinterpret_cast<uint8_t *>(secret.data()), secret.size()), 0));
	return std::optional<engine::LuksSettings>(engine::LuksSettings{std::move(secret), ctx.options.luksIterTime});
}

void restoredVolumeProductCodes(Context &ctx, const Call &call, const store::Manifest &m)
{
	// Only the owner's restore speaks for the volume: a recipient of a
	// shared snapshot does not write into another account's records.
	if ((m.accountId.empty() ? ctx.defaultAccount : m.accountId) != call.accountId)
		return;
	auto changed = engine::giveVolumeProductCodes(*ctx.store, m);
	auto synced = changed && *changed ? syncVolume(ctx, **changed) : Result<void>{};
	if (!changed || !synced)
		warnOnStderr("the product codes of " + m.snapshotId + " were not recorded on volume " + m.volumeId + ": " +
			     (changed ? synced.error() : changed.error()).toString());
}

void warnOnStderr(const std::string &message)
{
	// One write: jobs in parallel warn into one journal.
	std::cerr << ("virtsnap: warning: " + message + "\n");
}

Result<Reply> createVolume(Context &ctx, const Call &call)
{
	const Arguments &args = call.args;
	if (args.has("instant"))
		return createVolumeInstant(ctx, call);
	if (args.has("node") || args.has("speed"))
		return fail(errc::kInvalidParameterValue, "--node and --speed go with --instant");
	std::string id = args.get("snapshot-id");
	std::string target = args.get("target");
	if (args.has("domain") || args.has("qmp-socket"))
		VS_TRY(resolveInstanceDisk(ctx, args, id, target));
	if (id.empty())
		return fail(errc::kMissingParameter, "--snapshot-id is required (or --domain NAME --disk DISK)");
	if (target.empty())
		return fail(errc::kMissingParameter, "--target is required");
	VS_TRY(checkSnapshotId(id));
	// Its owner's, or shared with the caller's account (access.h).
	VS_ASSIGN(catalog::SnapshotRow row, visibleSnapshot(ctx, call, id));
	VS_TRY(requireCompleted(row, "restored"));
	VS_TRY(refuseSharedEncrypted(ctx, call, row));
	engine::RestoreRequest req{id, target, args.get("format", "qcow2"), call.progress, call.uid, {}, warnOnStderr,
				   ctx.options.hypervisorTimeout};
	VS_ASSIGN(req.luks, encryptionSecret(ctx, call));
	VS_ASSIGN(store::Manifest m, engine::createVolume(*ctx.store, req));
	restoredVolumeProductCodes(ctx, call, m);
	Json j = Json::object();
	j.set("SnapshotId", Json::string(m.snapshotId));
	j.set("VolumeId", Json::string(m.volumeId));
	j.set("Target", Json::string(req.target.string()));
	j.set("Format", Json::string(req.format));
	j.set("Size", Json::integer(int64_t(m.volumeSize)));
	j.set("Encrypted", Json::boolean(req.luks.has_value()));
	if (m.encrypted)
		j.set("KmsKeyId", Json::string(m.kmsKeyId));
	// The new volume is the snapshot's volume again: it carries its codes.
	j.set("ProductCodes", productCodesJson(m.productCodes));
	return ok(j);
}

Result<Reply> createTags(Context &ctx, const Call &call)
{
	return changeTags(ctx, call, true);
}

Result<Reply> deleteTags(Context &ctx, const Call &call)
{
	return changeTags(ctx, call, false);
}

Result<Reply> registerInstance(Context &ctx, const Call &call)
{
	VS_ASSIGN(hypervisor::Target target, parseTarget(call.args, ctx.options.libvirtUri));
	std::string hib = call.args.get("hibernation-enabled", "false");
	if (hib != "true" && hib != "false")
		return fail(errc::kInvalidParameterValue, "--hibernation-enabled must be true or false");
	VS_ASSIGN(auto driver, ctx.drivers->get(target));
	VS_ASSIGN(hypervisor::InstanceInfo instance, driver->instance());
	engine::InstanceRecord r{instanceIdFor(instance.key), instance.key, instance.name, hib == "true", {}};
	for (const std::string &spec : call.args.all("product-code")) {
		VS_ASSIGN(ProductCode code, parseProductCode(spec));
		addProductCodes(r.productCodes, {code});
	}
	VS_TRY(engine::saveInstance(*ctx.store, r));
	Json j = Json::object();
	j.set("InstanceId", Json::string(r.instanceId));
	j.set("Name", Json::string(r.name));
	j.set("HibernationEnabled", Json::boolean(r.hibernationEnabled));
	j.set("ProductCodes", productCodesJson(r.productCodes));
	return ok(j);
}

Result<Reply> describeVolumes(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::vector<std::string> ids, parseVolumeIds(call.args));
	if (call.args.has("qmp-socket") || call.args.has("domain")) {
		// The disks of that instance, registered on first sight.
		VS_ASSIGN(hypervisor::Target target, parseTarget(call.args, ctx.options.libvirtUri));
		VS_ASSIGN(auto driver, ctx.drivers->get(target));
		VS_ASSIGN(hypervisor::InstanceInfo instance, driver->instance());
		VS_ASSIGN(std::vector<hypervisor::DiskInfo> disks, driver->disks());
		std::vector<std::string> seen;
		for (const hypervisor::DiskInfo &disk : disks) {
			std::string vol = volumeIdFor(instance.key, disk.diskId);
			VS_ASSIGN(auto record, engine::loadVolume(*ctx.store, vol));
			engine::VolumeRecord v = record.value_or(
				engine::VolumeRecord{vol, instance.key, instance.name, disk.diskId, disk.size, "standard", {}, false, "", {}});
			v.size = disk.size;
			v.instanceName = instance.name;
			// Encrypted, with no key yet: the first snapshot gives it its
			// account's default key. A describe by any caller must not fix
			// the key of a volume others snapshot.
			v.encrypted |= disk.encrypted;
			// A file restored from a snapshot with product codes has them
			// wherever it is attached (engine/image_product_codes.h).
			engine::addImageProductCodes(v, disk, warnOnStderr);
			VS_TRY(engine::saveVolume(*ctx.store, v));
			VS_TRY(ctx.catalog->putVolume(volumeRow(v, target.key())));
			seen.push_back(vol);
		}
		if (ids.empty())
			ids = seen;
	}
	VS_ASSIGN(std::vector<catalog::VolumeRow> rows, ctx.catalog->listVolumes(ids));
	for (const std::string &id : ids)
		if (std::none_of(rows.begin(), rows.end(), [&](const catalog::VolumeRow &r) { return r.volumeId == id; }))
			return fail(errc::kVolumeNotFound, "volume " + id + " is not known here");
	Json list = Json::array();
	for (const catalog::VolumeRow &r : rows)
		list.append(volumeJson(r));
	Json doc = Json::object();
	doc.set("Volumes", list);
	return ok(doc);
}

// --encrypted true marks a volume encrypted (its snapshots then are, and
// the volumes made from them), with --kms-key-id's key: any key the
// acting account may use (engine/kms_keys.h), its default key when none
// is given. Like EBS, an encrypted volume never becomes unencrypted.
Result<void> changeEncryption(Context &ctx, const Call &call, engine::VolumeRecord &v)
{
	const Arguments &args = call.args;
	std::string encrypted = args.get("encrypted");
	if (encrypted != "" && encrypted != "true" && encrypted != "false")
		return fail(errc::kInvalidParameterValue, "--encrypted must be true or false");
	std::string key = args.get("kms-key-id");
	if (args.has("kms-key-id"))
		VS_TRY(engine::requireKmsKeyUse(*ctx.store, key, call.accountId, ctx.defaultAccount));
	// Re-keying decides who reads the volume's next snapshots: only an
	// account that may read them under the current key may do it.
	if ((args.has("kms-key-id") || encrypted == "true") && !v.kmsKeyId.empty())
		VS_TRY(requireVolumeKey(ctx, call.accountId, v));
	if (args.has("kms-key-id") && encrypted != "true" && !v.encrypted)
		return fail(errc::kInvalidParameterValue, "--kms-key-id needs --encrypted true");
	if (encrypted == "false" && v.encrypted)
		return fail(errc::kInvalidParameterValue, "volume " + v.volumeId + " is encrypted; it cannot be made unencrypted");
	std::string defaultKey;
	if (encrypted == "true" && key.empty() && v.kmsKeyId.empty()) {
		VS_ASSIGN(defaultKey, engine::defaultKmsKey(*ctx.store, call.accountId, ctx.defaultAccount));
	}
	if (encrypted == "true" || v.encrypted) {
		v.encrypted = true;
		v.kmsKeyId = key.empty() ? (v.kmsKeyId.empty() ? defaultKey : v.kmsKeyId) : key;
	}
	return {};
}

Result<Reply> modifyVolume(Context &ctx, const Call &call)
{
	VS_ASSIGN(std::string id, call.args.require("volume-id"));
	if (!call.args.has("volume-class") && !call.args.has("encrypted") && !call.args.has("kms-key-id"))
		return fail(errc::kMissingParameter, "--volume-class or --encrypted is required");
	std::string cls = call.args.get("volume-class");
	if (call.args.has("volume-class") && cls != "standard" && cls != "st1" && cls != "sc1")
		return fail(errc::kInvalidParameterValue, "--volume-class must be standard, st1 or sc1");
	VS_ASSIGN(auto v, engine::loadVolume(*ctx.store, id));
	if (!v)
		return fail(errc::kVolumeNotFound, "volume " + id + " is not known here");
	if (call.args.has("volume-class"))
		v->volumeClass = cls;
	VS_TRY(changeEncryption(ctx, call, *v));
	VS_TRY(engine::saveVolume(*ctx.store, *v));
	VS_TRY(syncVolume(ctx, *v));
	auto row = ctx.catalog->getVolume(id);
	return ok(row && *row ? volumeJson(**row) : Json::object());
}

} // namespace virtsnap::daemon
