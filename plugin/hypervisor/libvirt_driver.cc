#include "libvirt_driver.h"

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <set>

#include "core/ids.h"
#include "core/process.h"
#include "core/scratch_dir.h"
#include "qemu_driver.h"
#include "json/json.h"
#include "storage_daemon.h"

namespace virtsnap::hypervisor {

namespace fs = std::filesystem;
namespace {

// libvirt prints every error to stderr unless told otherwise; ours carry
// the message instead.
void quiet(void *, virErrorPtr) {}

std::string lastError()
{
	const char *m = virGetLastErrorMessage();
	return m ? m : "unknown libvirt error";
}

std::unexpected<Error> libvirtFail(const std::string &what)
{
	return fail(errc::kHypervisor, what + ": " + lastError());
}

constexpr const char *kScratchRoot = "/var/tmp";
constexpr const char *kScratchPrefix = "virtsnap-libvirt-";

// Names virtsnap gives checkpoints and bitmaps: anything else is the user's.
bool ours(const std::string &name)
{
	return isSnapshotId(name) || isSnapshotSetId(name);
}

bool contains(const std::vector<std::string> &v, const std::string &s)
{
	return std::find(v.begin(), v.end(), s) != v.end();
}

// An image's bitmaps as qemu-img reads them from a closed qcow2: "in-use"
// on a closed image means QEMU did not close it cleanly.
std::vector<BitmapInfo> imageBitmaps(const Json &info)
{
	std::vector<BitmapInfo> out;
	Json list = info.get("format-specific").get("data").get("bitmaps");
	for (size_t i = 0; i < list.size(); i++) {
		Json b = list.at(i);
		BitmapInfo bm;
		bm.name = b.getString("name").value_or("");
		bm.granularity = uint64_t(b.getInt("granularity").value_or(0));
		bm.persistent = true;
		Json flags = b.get("flags");
		for (size_t k = 0; k < flags.size(); k++) {
			std::string f = flags.at(k).asString();
			bm.recording |= f == "auto";
			bm.inconsistent |= f == "in-use";
		}
		out.push_back(bm);
	}
	return out;
}

} // namespace

class LibvirtDriver::Connection
{
public:
	Connection(virConnectPtr conn, virDomainPtr dom) : conn_(conn), dom_(dom) {}
	~Connection()
	{
		virDomainFree(dom_);
		virConnectClose(conn_);
	}
	virDomainPtr dom() const { return dom_; }

private:
	virConnectPtr conn_;
	virDomainPtr dom_;
};

// The freeze through libvirt's own agent channel. libvirt's agent timeout
// is a property of the domain; it is set for the freeze and put back to
// libvirt's default afterwards.
class LibvirtDriver::FreezeThroughLibvirt : public Quiescer
{
public:
	FreezeThroughLibvirt(std::shared_ptr<LibvirtDriver> driver, QuiesceMode mode, std::chrono::milliseconds timeout)
		: driver_(std::move(driver)), mode_(mode), timeout_(timeout)
	{
	}
	~FreezeThroughLibvirt() override { thaw(); }

	Result<void> freeze() override
	{
		if (mode_ == QuiesceMode::Off)
			return {};
		virDomainPtr dom = driver_->connection_->dom();
		int seconds = int(std::max<int64_t>(1, (timeout_.count() + 999) / 1000));
		virDomainAgentSetResponseTimeout(dom, seconds, 0);
		start_ = std::chrono::steady_clock::now();
		if (virDomainFSFreeze(dom, nullptr, 0, 0) < 0) {
			fallbackReason_ = "libvirt's guest agent of " + driver_->describe() + ": " + lastError();
			attempted_ = true;
			virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
			if (mode_ == QuiesceMode::Required)
				return fail(errc::kIncorrectState,
					    "cannot freeze the guest's filesystems (--quiesce required): " + fallbackReason_);
			return {};
		}
		frozen_ = attempted_ = true;
		return {};
	}

	void thaw() override
	{
		if (!attempted_)
			return;
		attempted_ = false;
		virDomainPtr dom = driver_->connection_->dom();
		// After a failed freeze too: an agent that timed out may still
		// run the freeze when it wakes.
		int thawed = virDomainFSThaw(dom, nullptr, 0, 0);
		if (frozen_ && thawed >= 0)
			freezeMillis_ = std::chrono::duration_cast<std::chrono::milliseconds>(
						std::chrono::steady_clock::now() - start_)
						.count();
		virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
	}

	bool frozen() const override { return frozen_; }
	int64_t freezeMillis() const override { return freezeMillis_; }
	const std::string &fallbackReason() const override { return fallbackReason_; }

private:
	std::shared_ptr<LibvirtDriver> driver_;
	QuiesceMode mode_;
	std::chrono::milliseconds timeout_;
	std::chrono::steady_clock::time_point start_;
	bool attempted_ = false;
	bool frozen_ = false;
	int64_t freezeMillis_ = -1;
	std::string fallbackReason_;
};

// A running domain's pull-mode backup: libvirt's NBD server exports each
// disk under its target name, with the dirty bitmap since the parent
// checkpoint as "backup-TARGET". Ending the job removes the exports and the
// scratch files; unless committed, the new checkpoint goes too.
class LibvirtDriver::BackupCapture : public Capture
{
public:
	BackupCapture(std::shared_ptr<LibvirtDriver> driver, std::string checkpoint, std::string socket,
		      ScratchDir scratch, std::vector<std::string> keep)
		: driver_(std::move(driver)), checkpoint_(std::move(checkpoint)), socket_(std::move(socket)),
		  scratch_(std::move(scratch)), keep_(std::move(keep))
	{
	}
	// The scratch directory goes last, once the job that used it ended.
	~BackupCapture() override
	{
		std::lock_guard lock(driver_->mutex_);
		endJobLocked();
		if (!committed_)
			driver_->dropCheckpointLocked(checkpoint_);
	}

	const std::vector<DiskExport> &exports() const override { return exports_; }

	Result<void> commit() override
	{
		std::lock_guard lock(driver_->mutex_);
		committed_ = true;
		// The data is read: the job ends before checkpoints change,
		// which libvirt refuses during a backup.
		endJobLocked();
		std::vector<std::string> keep = keep_;
		keep.push_back(checkpoint_);
		driver_->dropUnneededLocked(keep);
		return {};
	}

	std::string cleanupRecord() const override
	{
		Json r = Json::object();
		r.set("driver", Json::string("libvirt"));
		r.set("checkpoint", Json::string(checkpoint_));
		r.set("nbd_socket", Json::string(socket_));
		return r.dump();
	}

	std::vector<DiskExport> exports_;
	bool jobRunning_ = false;

private:
	void endJobLocked()
	{
		if (!jobRunning_)
			return;
		jobRunning_ = false;
		virDomainAbortJob(driver_->connection_->dom());
	}

	std::shared_ptr<LibvirtDriver> driver_;
	std::string checkpoint_;
	std::string socket_;
	ScratchDir scratch_; // holds socket_ and the scratch files
	std::vector<std::string> keep_;
	bool committed_ = false;
};

// A shut-off domain's images served by a qemu-storage-daemon, captured by
// the plain QEMU driver. Members go in reverse: the capture, then the
// driver's monitor connection, then the daemon's clean quit.
class LibvirtDriver::OfflineCapture : public Capture
{
public:
	const std::vector<DiskExport> &exports() const override { return inner_->exports(); }
	Result<void> commit() override { return inner_->commit(); }
	std::string cleanupRecord() const override
	{
		// Nothing of an offline capture outlives its process but files
		// in its work directory, and the daemon holds the bitmaps
		// until it quits: a crash leaves the images as they were.
		Json r = Json::object();
		r.set("driver", Json::string("libvirt-offline"));
		return r.dump();
	}

	std::unique_ptr<StorageDaemon> daemon_;
	std::shared_ptr<QemuDriver> driver_;
	std::unique_ptr<Capture> inner_;
};

LibvirtDriver::LibvirtDriver(std::unique_ptr<Connection> connection) : connection_(std::move(connection)) {}

LibvirtDriver::~LibvirtDriver() = default;

Result<std::shared_ptr<LibvirtDriver>> LibvirtDriver::connect(const std::string &uri, const std::string &domain)
{
	virSetErrorFunc(nullptr, quiet);
	virConnectPtr conn = virConnectOpen(uri.c_str());
	if (!conn)
		return fail(errc::kHypervisor, "cannot connect to libvirt at " + uri + ": " + lastError());
	virDomainPtr dom = virDomainLookupByUUIDString(conn, domain.c_str());
	if (!dom)
		dom = virDomainLookupByName(conn, domain.c_str());
	if (!dom) {
		virConnectClose(conn);
		return fail(errc::kInstanceNotFound, "no libvirt domain '" + domain + "' at " + uri);
	}
	std::shared_ptr<LibvirtDriver> d(new LibvirtDriver(std::make_unique<Connection>(conn, dom)));
	d->self_ = d;
	return d;
}

std::string LibvirtDriver::describe() const
{
	const char *name = virDomainGetName(connection_->dom());
	return "domain '" + std::string(name ? name : "?") + "'";
}

Result<DomainDescription> LibvirtDriver::description()
{
	char *xml = virDomainGetXMLDesc(connection_->dom(), 0);
	if (!xml)
		return libvirtFail("read the description of " + describe());
	std::string text = xml;
	free(xml);
	return parseDomainXml(text);
}

Result<std::string> LibvirtDriver::state()
{
	int state = 0, reason = 0;
	if (virDomainGetState(connection_->dom(), &state, &reason, 0) < 0)
		return libvirtFail("read the state of " + describe());
	switch (state) {
	case VIR_DOMAIN_RUNNING: return std::string("running");
	case VIR_DOMAIN_BLOCKED: return std::string("blocked");
	case VIR_DOMAIN_PAUSED: return std::string("paused");
	case VIR_DOMAIN_SHUTDOWN: return std::string("shutting down");
	case VIR_DOMAIN_SHUTOFF: return std::string("shut off");
	case VIR_DOMAIN_CRASHED: return std::string("crashed");
	case VIR_DOMAIN_PMSUSPENDED: return std::string("pmsuspended");
	default: return std::string("unknown");
	}
}

Result<InstanceInfo> LibvirtDriver::instance()
{
	auto desc = description();
	if (!desc)
		return std::unexpected(desc.error());
	auto st = state();
	if (!st)
		return std::unexpected(st.error());
	InstanceInfo info;
	info.name = desc->name;
	info.uuid = desc->uuid;
	// The UUID, not the name: volumes survive renaming the domain.
	info.key = "uuid:" + desc->uuid;
	info.status = *st;
	info.hibernated = virDomainHasManagedSaveImage(connection_->dom(), 0) > 0;
	info.hibernationEnabled = desc->suspendToDiskEnabled;
	return info;
}

Result<std::vector<DiskInfo>> LibvirtDriver::disks()
{
	std::lock_guard lock(mutex_);
	return disksLocked();
}

Result<std::vector<DiskInfo>> LibvirtDriver::disksLocked()
{
	auto desc = description();
	if (!desc)
		return std::unexpected(desc.error());
	auto st = state();
	if (!st)
		return std::unexpected(st.error());
	std::vector<DiskInfo> out;
	for (const DomainDisk &dd : desc->disks) {
		DiskInfo d;
		d.diskId = dd.target;
		d.nodeName = dd.target;
		d.format = dd.format;
		d.filename = dd.source;
		d.bootIndex = dd.bootOrder;
		out.push_back(d);
	}
	if (*st == "shut off") {
		for (DiskInfo &d : out) {
			auto info = runProgram({"qemu-img", "info", "--output=json", "-U", d.filename}, errc::kHypervisor);
			if (!info)
				return fail(errc::kHypervisor, "disk " + d.diskId + " of " + describe() + ": " +
								       info.error().message);
			auto j = Json::parse(*info);
			if (!j)
				return fail(errc::kHypervisor, "qemu-img info of " + d.filename + " is not JSON");
			d.size = uint64_t(j->getInt("virtual-size").value_or(0));
			d.bitmaps = imageBitmaps(*j);
		}
		return out;
	}
	// Read-only QMP through libvirt: sizes and bitmap states, which the
	// libvirt API does not give.
	char *reply = nullptr;
	if (virDomainQemuMonitorCommand(connection_->dom(), R"({"execute":"query-block"})", &reply, 0) < 0)
		return libvirtFail("query the disks of " + describe());
	auto j = Json::parse(reply);
	free(reply);
	if (!j)
		return fail(errc::kHypervisor, "query-block of " + describe() + " is not JSON");
	Json blocks = j->get("return");
	std::map<std::string, std::string> targetOfAlias;
	for (const DomainDisk &dd : desc->disks)
		targetOfAlias[dd.alias] = dd.target;
	for (size_t i = 0; i < blocks.size(); i++) {
		Json b = blocks.at(i);
		auto target = targetOfAlias.find(qdevId(b.getString("qdev").value_or("")));
		if (target == targetOfAlias.end())
			continue;
		Json inserted = b.get("inserted");
		for (DiskInfo &d : out) {
			if (d.diskId != target->second)
				continue;
			d.size = uint64_t(inserted.get("image").getInt("virtual-size").value_or(0));
			d.bitmaps = bitmapsFromQmp(inserted.get("dirty-bitmaps"));
		}
	}
	return out;
}

Result<std::vector<CheckpointDescription>> LibvirtDriver::checkpointsLocked()
{
	virDomainCheckpointPtr *list = nullptr;
	int n = virDomainListAllCheckpoints(connection_->dom(), &list, 0);
	if (n < 0)
		return libvirtFail("list the checkpoints of " + describe());
	std::vector<CheckpointDescription> out;
	for (int i = 0; i < n; i++) {
		char *xml = virDomainCheckpointGetXMLDesc(list[i], VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
		if (xml) {
			auto c = parseCheckpointXml(xml);
			free(xml);
			if (c)
				out.push_back(*c);
		}
		virDomainCheckpointFree(list[i]);
	}
	free(list);
	return out;
}

Result<void> LibvirtDriver::redefineLocked(const std::string &name, const std::vector<std::string> &disks)
{
	VS_ASSIGN(const DomainDescription desc, description());
	CheckpointDefinition redefined{name, {}, int64_t(std::time(nullptr))};
	for (const DomainDisk &d : desc.disks)
		redefined.disks.push_back({d.target, contains(disks, d.target)});
	std::string xml = checkpointXml(redefined);
	virDomainCheckpointPtr cp = virDomainCheckpointCreateXML(connection_->dom(), xml.c_str(),
								 VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE);
	if (!cp)
		return libvirtFail("redefine checkpoint " + name + " of " + describe());
	virDomainCheckpointFree(cp);
	return {};
}

void LibvirtDriver::dropCheckpointLocked(const std::string &name)
{
	virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(connection_->dom(), name.c_str(), 0);
	if (!cp)
		return;
	if (virDomainCheckpointDelete(cp, 0) < 0) {
		// A disk lost the bitmap already (a crash, a replaced image):
		// forget the checkpoint, and let the next commit remove what
		// bitmaps of it remain, as orphans.
		virDomainCheckpointDelete(cp, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
	}
	virDomainCheckpointFree(cp);
}

void LibvirtDriver::dropUnneededLocked(const std::vector<std::string> &keep)
{
	auto cps = checkpointsLocked();
	if (cps)
		for (const CheckpointDescription &c : *cps)
			if (ours(c.name) && !contains(keep, c.name))
				dropCheckpointLocked(c.name);
	// Bitmaps of ours that no checkpoint names: libvirt removes bitmaps
	// only through a checkpoint, so one is redefined to be deleted.
	auto disks = disksLocked();
	cps = checkpointsLocked();
	if (!disks || !cps)
		return;
	std::map<std::string, std::vector<std::string>> orphans;
	for (const DiskInfo &d : *disks)
		for (const BitmapInfo &b : d.bitmaps)
			if (ours(b.name) && !contains(keep, b.name) &&
			    std::none_of(cps->begin(), cps->end(),
					 [&](const CheckpointDescription &c) { return c.name == b.name; }))
				orphans[b.name].push_back(d.diskId);
	for (const auto &[name, disksOf] : orphans)
		if (redefineLocked(name, disksOf))
			dropCheckpointLocked(name);
}

Result<std::vector<std::string>> LibvirtDriver::reconcile(const std::vector<std::string> &needed)
{
	std::lock_guard lock(mutex_);
	std::vector<std::string> notes;
	auto cps = checkpointsLocked();
	if (!cps)
		return std::unexpected(cps.error());
	auto disks = disksLocked();
	if (!disks)
		return std::unexpected(disks.error());
	std::set<std::string> known;
	for (const CheckpointDescription &c : *cps)
		known.insert(c.name);
	for (const std::string &name : std::set<std::string>(needed.begin(), needed.end())) {
		if (known.count(name))
			continue;
		std::vector<std::string> holders;
		for (const DiskInfo &d : *disks)
			if (const BitmapInfo *b = d.bitmap(name); b && !b->inconsistent)
				holders.push_back(d.diskId);
		if (holders.empty())
			continue; // nothing to continue from: planning takes those disks in full
		// A transient domain, a libvirt reinstall, or a snapshot taken
		// while the domain was off: the bitmaps are there, the
		// checkpoint is not.
		if (auto r = redefineLocked(name, holders); !r)
			notes.push_back(r.error().message);
		else
			notes.push_back("redefined checkpoint " + name + " that libvirt did not know");
	}
	return notes;
}

std::unique_ptr<Quiescer> LibvirtDriver::quiescer(QuiesceMode mode, std::chrono::milliseconds timeout,
						  const std::string &qgaSocket)
{
	(void)qgaSocket; // libvirt owns the agent channel
	auto st = state();
	if (st && *st == "shut off")
		mode = QuiesceMode::Off; // no guest to freeze
	return std::make_unique<FreezeThroughLibvirt>(self_.lock(), mode, timeout);
}

Result<std::unique_ptr<Capture>> LibvirtDriver::capture(const CaptureSpec &spec)
{
	if (spec.disks.empty())
		return fail(errc::kInvalidParameterValue, "no disk to capture");
	auto st = state();
	if (!st)
		return std::unexpected(st.error());
	if (*st == "shut off")
		return captureOffline(spec);
	if (*st != "running" && *st != "paused" && *st != "blocked")
		return fail(errc::kIncorrectState,
			    describe() + " is " + *st + "; snapshots need it running, paused or shut off");
	return captureRunning(spec);
}

Result<std::unique_ptr<Capture>> LibvirtDriver::captureRunning(const CaptureSpec &spec)
{
	// Before the lock: its destructor takes the lock, so on a return that
	// drops it, it must go after the lock is released.
	std::unique_ptr<BackupCapture> cap;
	std::lock_guard lock(mutex_);
	const std::string checkpoint = spec.disks.front().newBitmap;
	auto desc = description();
	if (!desc)
		return std::unexpected(desc.error());

	// QEMU runs as its own user: it creates the NBD socket and the
	// scratch files in a directory of its own, in /var/tmp (on disk, and
	// reachable by any user, unlike a private $TMPDIR).
	// Owned from here on, so every return before the capture takes it
	// removes it.
	auto scratch = ScratchDir::create(kScratchRoot, kScratchPrefix);
	if (!scratch)
		return std::unexpected(scratch.error());
	fs::path dir = scratch->path();
	auto user = qemuUserLocked();
	if (user && ::chown(dir.c_str(), user->first, user->second) != 0)
		return failErrno("give " + dir.string() + " to QEMU's user", errno);
	std::string socket = (dir / "nbd.sock").string();

	std::vector<BackupDisk> backupDisks;
	CheckpointDefinition created{checkpoint, {}, std::nullopt};
	for (const DomainDisk &d : desc->disks) {
		auto req = std::find_if(spec.disks.begin(), spec.disks.end(),
					[&](const CaptureRequest &r) { return r.diskId == d.target; });
		BackupDisk &disk = backupDisks.emplace_back();
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
		// Only qcow2 keeps bitmaps; a raw disk is read in full each time.
		created.disks.push_back({d.target, req->persistent});
	}
	std::string backup = backupXml(socket, backupDisks);
	std::string cpXml = checkpointXml(created);
	for (const CaptureRequest &r : spec.disks)
		if (std::none_of(desc->disks.begin(), desc->disks.end(),
				 [&](const DomainDisk &d) { return d.target == r.diskId; }))
			return fail(errc::kDiskNotFound, "no disk '" + r.diskId + "' in " + describe());

	cap = std::make_unique<BackupCapture>(self_.lock(), checkpoint, socket, std::move(*scratch), spec.stillNeeded);
	Result<void> frozen;
	if (spec.quiescer)
		frozen = spec.quiescer->freeze();
	if (!frozen) {
		spec.quiescer->thaw();
		return std::unexpected(frozen.error());
	}
	int begun = virDomainBackupBegin(connection_->dom(), backup.c_str(), cpXml.c_str(), 0);
	std::string beginError = begun < 0 ? lastError() : "";
	if (spec.quiescer)
		spec.quiescer->thaw();
	if (begun < 0)
		return fail(errc::kHypervisor, "the point-in-time backup of " + describe() + " failed: " + beginError);
	cap->jobRunning_ = true;
	for (const CaptureRequest &r : spec.disks) {
		DiskExport e;
		e.diskId = r.diskId;
		e.nbdSocket = socket;
		e.exportName = r.diskId;
		e.dirtyBitmapContext = r.parentBitmap.empty() ? "" : "qemu:dirty-bitmap:backup-" + r.diskId;
		cap->exports_.push_back(e);
	}
	auto sizes = disksLocked();
	if (!sizes)
		return std::unexpected(sizes.error());
	for (DiskExport &e : cap->exports_)
		for (const DiskInfo &d : *sizes)
			if (d.diskId == e.diskId)
				e.size = d.size;
	return std::unique_ptr<Capture>(std::move(cap));
}

std::optional<std::pair<unsigned, unsigned>> LibvirtDriver::qemuUserLocked()
{
	// The DAC label of the running domain's process: "+uid:+gid".
	virSecurityLabelPtr labels = nullptr;
	int n = virDomainGetSecurityLabelList(connection_->dom(), &labels);
	std::optional<std::pair<unsigned, unsigned>> user;
	for (int i = 0; i < n; i++) {
		unsigned uid = 0, gid = 0;
		if (std::sscanf(labels[i].label, "+%u:+%u", &uid, &gid) == 2)
			user = std::make_pair(uid, gid);
	}
	free(labels);
	return user;
}

Result<std::unique_ptr<Capture>> LibvirtDriver::captureOffline(const CaptureSpec &spec)
{
	auto desc = description();
	if (!desc)
		return std::unexpected(desc.error());
	std::vector<StorageDaemonDisk> images;
	std::vector<std::string> nodes;
	for (const CaptureRequest &r : spec.disks) {
		auto d = std::find_if(desc->disks.begin(), desc->disks.end(),
				      [&](const DomainDisk &x) { return x.target == r.diskId; });
		if (d == desc->disks.end())
			return fail(errc::kDiskNotFound, "no disk '" + r.diskId + "' in " + describe());
		images.push_back({d->target, d->source, d->format.empty() ? "raw" : d->format});
		nodes.push_back(d->target);
	}
	auto cap = std::make_unique<OfflineCapture>();
	auto daemon = StorageDaemon::start(images, spec.scratchDir);
	if (!daemon)
		return fail(errc::kHypervisor, describe() + " is shut off, and its images could not be opened: " +
						       daemon.error().message);
	cap->daemon_ = std::move(*daemon);
	InstanceInfo info;
	info.name = desc->name;
	info.uuid = desc->uuid;
	info.key = "uuid:" + desc->uuid;
	info.status = "shut off";
	auto driver = QemuDriver::connectStorageDaemon(cap->daemon_->qmpSocket(), spec.scratchDir, info, nodes);
	if (!driver)
		return std::unexpected(driver.error());
	cap->driver_ = *driver;
	CaptureSpec inner = spec;
	inner.quiescer = nullptr;
	auto c = cap->driver_->capture(inner);
	if (!c)
		return std::unexpected(c.error());
	cap->inner_ = std::move(*c);
	return std::unique_ptr<Capture>(std::move(cap));
}

void LibvirtDriver::removeLeftovers(const std::string &cleanupRecord)
{
	auto record = Json::parse(cleanupRecord);
	if (!record || record->getString("driver") != "libvirt")
		return;
	std::lock_guard lock(mutex_);
	// Our backup job, if it is still running: its socket says so.
	std::string socket = record->getString("nbd_socket").value_or("");
	if (char *xml = virDomainBackupGetXMLDesc(connection_->dom(), 0)) {
		auto job = parseBackupXml(xml);
		free(xml);
		if (!socket.empty() && job && job->socket == socket)
			virDomainAbortJob(connection_->dom());
	}
	dropCheckpointLocked(record->getString("checkpoint").value_or(""));
	std::error_code ec;
	fs::path dir = fs::path(socket).parent_path();
	if (dir.parent_path() == kScratchRoot && dir.filename().string().rfind(kScratchPrefix, 0) == 0)
		fs::remove_all(dir, ec);
}

void LibvirtDriver::imagesReplaced()
{
	std::lock_guard lock(mutex_);
	auto cps = checkpointsLocked();
	if (!cps)
		return;
	for (const CheckpointDescription &c : *cps)
		if (virDomainCheckpointPtr cp =
			    virDomainCheckpointLookupByName(connection_->dom(), c.name.c_str(), 0)) {
			virDomainCheckpointDelete(cp, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
			virDomainCheckpointFree(cp);
		}
}

} // namespace virtsnap::hypervisor
