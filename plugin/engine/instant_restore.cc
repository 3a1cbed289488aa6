#include "instant_restore.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/acting_as.h"
#include "core/file_util.h"
#include "core/ids.h"
#include "core/process.h"
#include "crypto/resource_ids.h"
#include "image_product_codes.h"
#include "json/json.h"
#include "restore_journal.h"

namespace virtsnap::engine {

namespace fs = std::filesystem;

namespace {

// sun_path holds 108 bytes with its terminating zero.
constexpr size_t kMaxSocketPath = 107;

Result<void> checkInstantTarget(const InstantRequest &req)
{
	VS_ASSIGN(ActingAs asCaller, ActingAs::caller(req.writeAs));
	std::error_code ec;
	if (fs::symlink_status(req.target, ec).type() != fs::file_type::not_found)
		return fail(errc::kTargetExists, req.target.string() + " already exists; restore never overwrites");
	fs::path dir = req.target.parent_path().empty() ? fs::path(".") : req.target.parent_path();
	if (!fs::is_directory(dir, ec))
		return fail(errc::kInvalidParameterValue, "directory " + dir.string() + " does not exist");
	return {};
}

// Only the group of the socket's directory may connect: QEMU's user
// (libvirt-qemu) reaches it through that group. We run as root and the
// path may be in a directory others write: the change goes through a
// descriptor of the inode checked to be a socket, never through a path a
// symlink could have been swapped into meanwhile.
Result<void> shareSocketWithGroup(const fs::path &socket)
{
	const std::string what = "give the export's socket " + socket.string() + " to the group of its directory";
	UniqueFd fd(::open(socket.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
	struct stat st {};
	if (!fd.isValid() || ::fstat(fd.get(), &st) != 0)
		return failErrno(what, errno);
	if (!S_ISSOCK(st.st_mode))
		return fail(errc::kIo, what + ": it is no longer a socket");
	struct stat dir {};
	if (::stat(socket.parent_path().c_str(), &dir) != 0)
		return failErrno("stat " + socket.parent_path().string(), errno);
	const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
	if (::fchownat(fd.get(), "", uid_t(-1), dir.st_gid, AT_EMPTY_PATH) != 0 || ::chmod(self.c_str(), 0660) != 0)
		return failErrno(what, errno);
	return {};
}

// The qcow2 over the export, created as the caller and renamed into place
// whole. -u: qemu-img need not open the backing to learn the size.
Result<void> writeOverlay(const InstantRequest &req, const std::string &uri, const store::Manifest &m)
{
	VS_ASSIGN(ActingAs asCaller, ActingAs::caller(req.writeAs));
	auto out = TempFile::create(req.target, 0644);
	if (!out && out.error().code == errc::kAccessDenied)
		return fail(errc::kAccessDenied, "no permission to create " + req.target.string());
	if (!out)
		return std::unexpected(out.error());
	VS_TRY(runProgram({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", uri, "-u",
			   heldOpenPath(out->fd()), std::to_string(m.volumeSize)},
			  errc::kIo, {out->fd()}));
	markRestoredImage(out->fd(), req.target, m.productCodes, req.warn);
	return out->commit(false);
}

} // namespace

Result<InstantVolume> createInstantVolume(store::Store &store, const InstantRequest &req)
{
	VS_TRY(checkSnapshotId(req.snapshotId));
	VS_TRY(checkInstantTarget(req));
	// Its image would take the guest's data in plaintext: an encrypted
	// snapshot is restored only into a LUKS image (qcow2_image_writer.h). One
	// without a manifest yet is refused below, as serving it is.
	if (auto early = store.getManifest(req.snapshotId); early && early->encrypted)
		return fail(errc::kInvalidParameterValue, "snapshot " + req.snapshotId +
								  " is encrypted: --instant writes a plain qcow2; "
								  "restore it without --instant and with --encryption-secret-file");
	VS_ASSIGN(std::string name, newResourceId("instant-"));
	VS_TRY(makeDirs(req.instantDir, 0755));
	ServeRequest serve = req.serve;
	serve.snapshotId = req.snapshotId;
	serve.socket = req.socket.empty() ? req.instantDir / (name + ".sock") : req.socket;
	serve.statsFile = req.instantDir / (name + ".stats");
	serve.port.reset();
	serve.writable = false; // QEMU writes into the qcow2, never into its backing
	if (serve.socket.string().size() > kMaxSocketPath)
		return fail(errc::kInvalidParameterValue, "the export's socket path " + serve.socket.string() +
								  " is too long for a unix socket: use a shorter state directory");
	VS_ASSIGN(store::ExportRecord exported, serveSnapshot(store, serve));
	auto stop = [&] {
		(void)stopServing(store, exported.exportId);
		std::error_code ec;
		fs::remove(serve.statsFile, ec);
	};
	auto m = store.getManifest(req.snapshotId);
	if (!m) {
		stop();
		return std::unexpected(m.error());
	}
	if (auto shared = shareSocketWithGroup(serve.socket); !shared) {
		stop();
		return std::unexpected(shared.error());
	}
	if (auto made = writeOverlay(req, exported.uri, *m); !made) {
		stop();
		return std::unexpected(made.error());
	}
	return InstantVolume{std::move(exported), std::move(*m), serve.statsFile, req.target};
}

namespace {

Result<void> takeOwnerAndModeOf(const fs::path &made, const fs::path &image)
{
	struct stat st {};
	if (::stat(image.c_str(), &st) != 0)
		return {}; // nothing to take after: the image is gone
	if (::chown(made.c_str(), st.st_uid, st.st_gid) != 0 || ::chmod(made.c_str(), st.st_mode & 07777) != 0)
		return failErrno("give " + made.string() + " the owner and mode of " + image.string(), errno);
	return {};
}

} // namespace

Result<std::vector<InstantVolume>> instantRestoreInstance(
	store::Store &store, hypervisor::Driver &driver, const InstanceRestorePlan &plan, const fs::path &journalDir,
	const std::function<InstantRequest(const InstanceRestorePlan::Disk &)> &requestFor)
{
	for (const InstanceRestorePlan::Disk &d : plan.disks)
		if (d.format != "qcow2")
			return fail(errc::kInvalidParameterValue, "disk " + d.diskId + " is " + d.format +
									  "; an instant restore writes qcow2 images only");
	std::vector<InstantVolume> made;
	std::vector<ImageSwap> swaps;
	auto undo = [&] {
		for (const InstantVolume &v : made) {
			(void)endInstantExport(store, v.exported.exportId, v.statsFile);
			std::error_code ec;
			fs::remove(v.target, ec);
		}
	};
	for (const InstanceRestorePlan::Disk &d : plan.disks) {
		InstantRequest req = requestFor(d);
		req.snapshotId = d.snapshotId;
		VS_ASSIGN(std::string suffix, newResourceId(".instant-"));
		req.target = d.image.string() + suffix;
		auto v = createInstantVolume(store, req);
		if (v) {
			v->target = req.target;
			made.push_back(std::move(*v));
		}
		Result<void> ready = v ? takeOwnerAndModeOf(req.target, d.image) : Result<void>(std::unexpected(v.error()));
		if (!ready) {
			undo();
			return fail(ready.error().code, "disk " + d.diskId + ": " + ready.error().message);
		}
		swaps.push_back({req.target, d.image});
	}
	auto journal = writeRestoreJournal(journalDir, plan.setId, swaps);
	if (!journal) {
		undo();
		return std::unexpected(journal.error());
	}
	auto finished = finishRestoreJournal(*journal);
	driver.imagesReplaced();
	if (!finished)
		return fail(finished.error().code, "the set is restored but not all of it is in place yet (" +
							   finished.error().message +
							   "); virtsnapd puts the rest in place when it next starts");
	for (size_t i = 0; i < made.size(); i++)
		made[i].target = plan.disks[i].image;
	return made;
}

Result<ExportReads> endInstantExport(store::Store &store, const std::string &exportId, const fs::path &statsFile)
{
	VS_TRY(stopServing(store, exportId));
	ExportReads reads;
	if (auto text = readFile(statsFile)) {
		if (auto j = Json::parse(std::string(text->begin(), text->end()))) {
			reads.served = uint64_t(j->getInt("BytesServed").value_or(0));
			reads.fromStore = uint64_t(j->getInt("BytesFromStore").value_or(0));
		}
	}
	std::error_code ec;
	fs::remove(statsFile, ec);
	return reads;
}

Result<void> copyInOffline(const fs::path &target, const std::string &writeAs)
{
	UniqueFd fd;
	{
		VS_ASSIGN(ActingAs asCaller, ActingAs::caller(writeAs));
		fd = UniqueFd(::open(target.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
		if (!fd.isValid())
			return failErrno("open " + target.string(), errno);
	}
	// Safe mode (no -u): what the backing holds is written into the image.
	VS_TRY(runProgram({"qemu-img", "rebase", "-q", "-f", "qcow2", "-b", "", heldOpenPath(fd.get())}, errc::kIo,
			  {fd.get()}));
	if (::fsync(fd.get()) != 0)
		return failErrno("fsync " + target.string(), errno);
	return {};
}

} // namespace virtsnap::engine
