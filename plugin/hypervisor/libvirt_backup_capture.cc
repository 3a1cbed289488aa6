// A running (or paused) domain's capture: a pull-mode backup
// (virDomainBackupBegin) that creates the new checkpoint with it. libvirt's
// NBD server exports each disk under its target name, with the dirty bitmap
// since the parent checkpoint as "backup-TARGET". Ending the job removes
// the exports; unless committed, the new checkpoint goes too. The scratch
// files are made here and reused by the backup: an encrypted disk's is
// encrypted too (scratch_key.h), under an ephemeral private libvirt secret
// that goes with the capture.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>

#include "core/luks_qcow2.h"
#include "core/process.h"
#include "core/scratch_dir.h"
#include "core/secret_memfd.h"
#include "json/json.h"
#include "libvirt_internal.h"
#include "scratch_key.h"

namespace virtsnap::hypervisor {

namespace fs = std::filesystem;

namespace {

int abortJob(virDomainPtr dom, std::string *)
{
	return virDomainAbortJob(dom);
}

// A backup that began after its caller gave up on QEMU: nobody reads it,
// so it ends, and the checkpoint it made goes with it.
void undoLateBackup(virDomainPtr dom, const std::string &checkpoint)
{
	virDomainAbortJob(dom);
	if (virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom, checkpoint.c_str(), 0)) {
		virDomainCheckpointDelete(cp, 0);
		virDomainCheckpointFree(cp);
	}
}

// QEMU runs as its own user: it creates the NBD socket and the scratch
// files in a directory of its own, in /var/tmp (on disk, and reachable by
// any user, unlike a private $TMPDIR).
constexpr const char *kScratchRoot = "/var/tmp";
constexpr const char *kScratchPrefix = "virtsnap-libvirt-";

class BackupCapture : public Capture
{
public:
	BackupCapture(std::shared_ptr<LibvirtDomain> domain, std::string checkpoint, std::string socket,
		      ScratchDir scratch, std::vector<std::string> keep, std::string scratchSecret)
		: domain_(std::move(domain)), checkpoint_(std::move(checkpoint)), socket_(std::move(socket)),
		  scratch_(std::move(scratch)), keep_(std::move(keep)), scratchSecret_(std::move(scratchSecret))
	{
	}
	// The scratch directory goes last, once the job that used it ended.
	~BackupCapture() override
	{
		std::lock_guard lock(domain_->mutex());
		endJobLocked();
		if (!committed_)
			domain_->dropCheckpointLocked(checkpoint_);
		domain_->undefineSecret(scratchSecret_);
	}

	const std::vector<DiskExport> &exports() const override { return exports_; }

	Result<void> commit() override
	{
		std::lock_guard lock(domain_->mutex());
		committed_ = true;
		// The data is read: the job ends before checkpoints change,
		// which libvirt refuses during a backup.
		endJobLocked();
		std::vector<std::string> keep = keep_;
		keep.push_back(checkpoint_);
		domain_->dropUnneededLocked(keep);
		return {};
	}

	std::string cleanupRecord() const override
	{
		Json r = Json::object();
		r.set("driver", Json::string("libvirt"));
		r.set("checkpoint", Json::string(checkpoint_));
		r.set("nbd_socket", Json::string(socket_));
		r.set("scratch_secret", Json::string(scratchSecret_));
		return r.dump();
	}

	// The job runs: ending it is this capture's from now on.
	void jobStarted() { jobRunning_ = true; }
	void setExports(std::vector<DiskExport> exports) { exports_ = std::move(exports); }

private:
	void endJobLocked()
	{
		if (!jobRunning_)
			return;
		jobRunning_ = false;
		(void)domain_->monitorCall("the end of the backup job", abortJob);
	}

	std::shared_ptr<LibvirtDomain> domain_;
	std::string checkpoint_;
	std::string socket_;
	ScratchDir scratch_; // holds socket_ and the scratch files
	std::vector<std::string> keep_;
	std::string scratchSecret_; // the libvirt secret's uuid; "": no disk is encrypted
	std::vector<DiskExport> exports_;
	bool jobRunning_ = false;
	bool committed_ = false;
};

// The user and group QEMU runs as: the DAC label of the running domain's
// process, "+uid:+gid".
std::optional<std::pair<unsigned, unsigned>> qemuUser(virDomainPtr dom)
{
	virSecurityLabelPtr labels = nullptr;
	int n = virDomainGetSecurityLabelList(dom, &labels);
	std::optional<std::pair<unsigned, unsigned>> user;
	for (int i = 0; i < n; i++) {
		unsigned uid = 0, gid = 0;
		if (std::sscanf(labels[i].label, "+%u:+%u", &uid, &gid) == 2)
			user = std::make_pair(uid, gid);
	}
	free(labels);
	return user;
}

// The capture's scratch directory, given to QEMU's user. Owned from its
// creation on, so every return before the capture takes it removes it.
Result<ScratchDir> qemuScratchDir(virDomainPtr dom)
{
	VS_ASSIGN(ScratchDir scratch, ScratchDir::create(kScratchRoot, kScratchPrefix));
	auto user = qemuUser(dom);
	if (user && ::chown(scratch.path().c_str(), user->first, user->second) != 0)
		return failErrno("give " + scratch.path().string() + " to QEMU's user", errno);
	return scratch;
}

struct BackupRequest {
	std::string backup;     // the job
	std::string checkpoint; // the checkpoint it creates
	std::vector<BackupDisk> disks;
};

// Every disk of the domain is named; the disks of `spec` are backed up,
// the encrypted ones with scratch files encrypted under `scratchSecret`.
BackupRequest backupRequest(const DomainDescription &desc, const CaptureSpec &spec, const fs::path &dir,
			    const std::string &socket, const std::string &scratchSecret)
{
	std::vector<BackupDisk> disks;
	CheckpointDefinition created{spec.disks.front().newBitmap, {}, std::nullopt};
	for (const DomainDisk &d : desc.disks) {
		auto req = std::find_if(spec.disks.begin(), spec.disks.end(),
					[&](const CaptureRequest &r) { return r.diskId == d.target; });
		BackupDisk &disk = disks.emplace_back();
		disk.target = d.target;
		if (req == spec.disks.end()) {
			created.disks.push_back({d.target, false});
			continue;
		}
		disk.backup = true;
		disk.exportName = d.target;
		disk.incremental = req->parentBitmap;
		disk.exportBitmap = req->parentBitmap.empty() ? "" : "backup-" + d.target;
		disk.scratchFile = (dir / (d.target + ".scratch")).string();
		if (!d.encryptionFormat.empty())
			disk.scratchSecret = scratchSecret;
		// Only qcow2 keeps bitmaps; a raw disk is read in full each time.
		created.disks.push_back({d.target, req->persistent});
	}
	return {backupXml(socket, disks), checkpointXml(created), disks};
}

// The scratch qcow2s the backup reuses, of the disks' sizes, given to
// QEMU's user; an encrypted disk's under `key`. Made here, not by libvirt:
// libvirt would give an encrypted one QEMU's default key derivation,
// seconds of it inside the freeze, where a random key needs none.
Result<void> makeBackupScratchFiles(virDomainPtr dom, const std::vector<BackupDisk> &disks,
				    const std::vector<DiskInfo> &sizes, const std::string &key)
{
	const auto user = qemuUser(dom);
	for (const BackupDisk &d : disks) {
		if (!d.backup)
			continue;
		auto info = std::find_if(sizes.begin(), sizes.end(),
					 [&](const DiskInfo &i) { return i.diskId == d.target; });
		if (info == sizes.end() || info->size == 0)
			return fail(errc::kHypervisor, "disk " + d.target + ": libvirt does not say its size");
		Result<void> made;
		if (d.scratchSecret.empty()) {
			auto plain = runProgram({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536",
						 d.scratchFile, std::to_string(info->size)},
						errc::kHypervisor);
			if (!plain)
				made = std::unexpected(plain.error());
		} else {
			VS_ASSIGN(UniqueFd fd, secretMemfd(key));
			made = createLuksQcow2(
				{d.scratchFile, info->size, fd.get(), kScratchLuksIterTime, "cluster_size=65536", {}},
				errc::kHypervisor);
		}
		if (!made)
			return fail(errc::kHypervisor, "disk " + d.target + ": cannot create its scratch file " +
							       d.scratchFile + ": " + made.error().message);
		if (user && ::chown(d.scratchFile.c_str(), user->first, user->second) != 0)
			return failErrno("give " + d.scratchFile + " to QEMU's user", errno);
	}
	return {};
}

bool capturesEncryptedDisk(const DomainDescription &desc, const CaptureSpec &spec)
{
	return std::any_of(desc.disks.begin(), desc.disks.end(), [&](const DomainDisk &d) {
		return !d.encryptionFormat.empty() &&
		       std::any_of(spec.disks.begin(), spec.disks.end(),
				   [&](const CaptureRequest &r) { return r.diskId == d.target; });
	});
}

std::vector<DiskExport> exportsOf(const CaptureSpec &spec, const std::string &socket,
				  const std::vector<DiskInfo> &disks, std::chrono::milliseconds answerTimeout)
{
	std::vector<DiskExport> out;
	for (const CaptureRequest &r : spec.disks) {
		DiskExport e;
		e.diskId = r.diskId;
		e.nbdSocket = socket;
		e.exportName = r.diskId;
		e.dirtyBitmapContext = r.parentBitmap.empty() ? "" : "qemu:dirty-bitmap:backup-" + r.diskId;
		e.answerTimeout = answerTimeout;
		for (const DiskInfo &d : disks)
			if (d.diskId == e.diskId)
				e.size = d.size;
		out.push_back(e);
	}
	return out;
}

} // namespace

Result<std::unique_ptr<Capture>> captureRunning(std::shared_ptr<LibvirtDomain> domain, const CaptureSpec &spec)
{
	// Before the lock: its destructor takes the lock, so on a return that
	// drops it, it must go after the lock is released.
	std::unique_ptr<BackupCapture> cap;
	std::lock_guard lock(domain->mutex());
	const std::string checkpoint = spec.disks.front().newBitmap;
	VS_ASSIGN(const DomainDescription desc, domain->description());
	VS_ASSIGN(ScratchDir scratch, qemuScratchDir(domain->dom()));
	const std::string socket = (scratch.path() / "nbd.sock").string();
	for (const CaptureRequest &r : spec.disks)
		if (std::none_of(desc.disks.begin(), desc.disks.end(),
				 [&](const DomainDisk &d) { return d.target == r.diskId; }))
			return fail(errc::kDiskNotFound, "no disk '" + r.diskId + "' in " + domain->describe());
	const bool encrypted = capturesEncryptedDisk(desc, spec);
	std::string secret;
	if (encrypted) {
		VS_ASSIGN(secret, randomUuid());
	}
	const BackupRequest request = backupRequest(desc, spec, scratch.path(), socket, secret);
	VS_ASSIGN(const std::vector<DiskInfo> sizes, domain->disksLocked());

	cap = std::make_unique<BackupCapture>(domain, checkpoint, socket, std::move(scratch), spec.stillNeeded, secret);
	if (spec.beforeChanges)
		VS_TRY(spec.beforeChanges(cap->cleanupRecord()));
	std::string key;
	if (encrypted) {
		VS_ASSIGN(key, randomScratchKey());
		VS_TRY(domain->defineSecret(secret, key));
	}
	VS_TRY(makeBackupScratchFiles(domain->dom(), request.disks, sizes, key));
	Result<void> frozen;
	if (spec.quiescer)
		frozen = spec.quiescer->freeze();
	if (!frozen) {
		spec.quiescer->thaw();
		return std::unexpected(frozen.error());
	}
	auto begun = domain->monitorCall(
		"the point-in-time backup",
		[request](virDomainPtr dom, std::string *) {
			return virDomainBackupBegin(dom, request.backup.c_str(), request.checkpoint.c_str(),
						    VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL);
		},
		[checkpoint](virDomainPtr dom) { undoLateBackup(dom, checkpoint); });
	if (spec.quiescer)
		spec.quiescer->thaw();
	if (!begun)
		return std::unexpected(begun.error());
	cap->jobStarted();
	cap->setExports(exportsOf(spec, socket, sizes, domain->monitorTimeout()));
	return std::unique_ptr<Capture>(std::move(cap));
}

void removeBackupLeftovers(LibvirtDomain &domain, const std::string &cleanupRecord)
{
	auto record = Json::parse(cleanupRecord);
	if (!record || record->getString("driver") != "libvirt")
		return;
	std::lock_guard lock(domain.mutex());
	// Our backup job, if it is still running: its socket says so.
	std::string socket = record->getString("nbd_socket").value_or("");
	if (char *xml = virDomainBackupGetXMLDesc(domain.dom(), 0)) {
		auto job = parseBackupXml(xml);
		free(xml);
		if (!socket.empty() && job && job->socket == socket)
			(void)domain.monitorCall("the end of the backup job", abortJob);
	}
	domain.dropCheckpointLocked(record->getString("checkpoint").value_or(""));
	domain.undefineSecret(record->getString("scratch_secret").value_or(""));
	std::error_code ec;
	fs::path dir = fs::path(socket).parent_path();
	if (dir.parent_path() == kScratchRoot && dir.filename().string().rfind(kScratchPrefix, 0) == 0)
		fs::remove_all(dir, ec);
}

} // namespace virtsnap::hypervisor
