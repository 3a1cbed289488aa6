// The plain QEMU driver (qemu_driver.h): what the QEMU has, and the capture
// sequence of DESIGN.md over its monitor. Longer than the project's 600
// lines on purpose: every step of a capture works on QemuCapture, which
// lives here and nowhere else, with the teardown helpers beside the steps
// they undo; a split would put the capture's internals in a header for the
// sake of a line count.
#include "qemu_driver.h"

#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/luks_qcow2.h"
#include "core/process.h"
#include "core/secret_memfd.h"
#include "crypto/crypto.h"
#include "guest_agent_quiescer.h"
#include "scratch_key.h"

namespace virtsnap::hypervisor {

namespace fs = std::filesystem;

// The QEMU objects of one disk of a capture; names derive from the snapshot
// id so concurrent captures never collide, and stay within QEMU's 31
// character limit on node names.
struct DiskNames {
	std::string diskId, formatNode, scratchNode, jobId, exportId, exportBitmap, newBitmap;
	fs::path scratchFile;
	// The `secret` object of an encrypted disk's scratch key ("" for a
	// plaintext disk).
	std::string scratchSecret;
};

namespace {

constexpr std::chrono::milliseconds kTeardownTimeout{10000};
// A QEMU that takes the connection answers with its greeting at once.
constexpr std::chrono::milliseconds kGreetingTimeout{5000};

std::unexpected<Error> qmpFail(const std::string &what, const qmp::Error &e)
{
	return fail(errc::kHypervisor, what + ": " + e.desc);
}


Json args()
{
	return Json::object();
}

Json action(const char *type, Json data)
{
	Json a = Json::object();
	a.set("type", Json::string(type));
	a.set("data", std::move(data));
	return a;
}

// Teardown steps are best effort: each one's failure means the thing is
// gone already, or QEMU is, and the steps after it still run.
void deleteExport(qmp::QmpClient &qmp, const std::string &exportId)
{
	Json a = args();
	a.set("id", Json::string(exportId));
	if (qmp.execute("block-export-del", a)) {
		// Deletion completes asynchronously; the scratch node stays busy
		// until it has.
		(void)qmp.waitEvent("BLOCK_EXPORT_DELETED",
			      [&](const Json &data) { return data.getString("id") == exportId; }, kTeardownTimeout);
	}
}

void cancelJobs(qmp::QmpClient &qmp, const std::vector<std::string> &jobIds)
{
	for (const std::string &id : jobIds) {
		Json a = args();
		a.set("device", Json::string(id));
		a.set("force", Json::boolean(true));
		(void)qmp.execute("block-job-cancel", a); // the query below tells whether it went
	}
	auto deadline = std::chrono::steady_clock::now() + kTeardownTimeout;
	while (std::chrono::steady_clock::now() < deadline) {
		auto jobs = qmp.execute("query-block-jobs");
		if (!jobs)
			return;
		bool present = false;
		for (size_t i = 0; i < jobs->size(); i++)
			for (const std::string &id : jobIds)
				present |= jobs->at(i).getString("device") == id;
		if (!present)
			return;
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
	}
}


void removeBitmap(qmp::QmpClient &qmp, const std::string &node, const std::string &name)
{
	Json a = args();
	a.set("node", Json::string(node));
	a.set("name", Json::string(name));
	(void)qmp.execute("block-dirty-bitmap-remove", a);
}

void deleteNode(qmp::QmpClient &qmp, const std::string &node)
{
	Json a = args();
	a.set("node-name", Json::string(node));
	(void)qmp.execute("blockdev-del", a);
}

void deleteSecret(qmp::QmpClient &qmp, const std::string &id)
{
	if (id.empty())
		return;
	Json a = args();
	a.set("id", Json::string(id));
	(void)qmp.execute("object-del", a);
}

} // namespace

class QemuDriver::QemuCapture : public Capture
{
public:
	struct Disk {
		DiskNames names;
		CaptureRequest request;
		uint64_t size = 0;
		bool encrypted = false;
		bool scratchFileMade = false;
		bool scratchSecretAdded = false;
		bool scratchNodeAdded = false;
		bool transactionDone = false;
		bool exported = false;
	};

	explicit QemuCapture(std::shared_ptr<QemuDriver> driver) : driver_(std::move(driver)) {}
	~QemuCapture() override { teardown(); }

	const std::vector<DiskExport> &exports() const override { return exports_; }

	Result<void> commit() override
	{
		std::lock_guard lock(driver_->mutex_);
		committed_ = true;
		Result<void> result;
		for (const Disk &d : disks_) {
			std::vector<std::string> names = d.request.obsoleteBitmaps;
			if (!d.request.parentBitmap.empty())
				names.push_back(d.request.parentBitmap);
			for (const std::string &name : names) {
				Json a = args();
				a.set("node", Json::string(d.names.formatNode));
				a.set("name", Json::string(name));
				auto r = driver_->qmp_->execute("block-dirty-bitmap-remove", a);
				// Another capture of the same disk may have dropped it.
				if (!r && r.error().desc.find("not found") == std::string::npos && result)
					result = qmpFail("remove bitmap " + name + " of " + d.request.diskId, r.error());
			}
		}
		return result;
	}

	std::string cleanupRecord() const override
	{
		Json disks = Json::array();
		for (const Disk &d : disks_) {
			Json j = Json::object();
			j.set("format_node", Json::string(d.names.formatNode));
			j.set("scratch_node", Json::string(d.names.scratchNode));
			j.set("scratch_file", Json::string(d.names.scratchFile.string()));
			j.set("scratch_secret", Json::string(d.names.scratchSecret));
			j.set("job_id", Json::string(d.names.jobId));
			j.set("export_id", Json::string(d.names.exportId));
			j.set("new_bitmap", Json::string(d.names.newBitmap));
			disks.append(j);
		}
		Json record = Json::object();
		record.set("driver", Json::string("qemu"));
		record.set("disks", disks);
		if (!exports_.empty())
			record.set("nbd_socket", Json::string(exports_.front().nbdSocket));
		return record.dump();
	}

	std::vector<Disk> disks_;
	std::vector<DiskExport> exports_;
	bool usesNbd_ = false;

private:
	void teardown()
	{
		std::lock_guard lock(driver_->mutex_);
		qmp::QmpClient &qmp = *driver_->qmp_;
		for (Disk &d : disks_)
			if (d.exported)
				deleteExport(qmp, d.names.exportId);
		if (usesNbd_)
			driver_->releaseNbdLocked();
		std::vector<std::string> jobs;
		for (Disk &d : disks_)
			if (d.transactionDone)
				jobs.push_back(d.names.jobId);
		if (!jobs.empty())
			cancelJobs(qmp, jobs);
		for (Disk &d : disks_) {
			if (d.scratchNodeAdded)
				deleteNode(qmp, d.names.scratchNode);
			if (d.scratchSecretAdded)
				deleteSecret(qmp, d.names.scratchSecret);
			if (d.scratchFileMade)
				::unlink(d.names.scratchFile.c_str());
			if (d.transactionDone && !committed_)
				removeBitmap(qmp, d.names.formatNode, d.names.newBitmap);
		}
	}

	std::shared_ptr<QemuDriver> driver_;
	bool committed_ = false;
};

Result<std::shared_ptr<QemuDriver>> QemuDriver::connect(const std::string &qmpSocket, const fs::path &workDir,
							std::chrono::milliseconds monitorTimeout)
{
	auto client = qmp::QmpClient::connect(qmpSocket, std::min(monitorTimeout, kGreetingTimeout));
	if (!client)
		return fail(errc::kHypervisor, "cannot reach QEMU at " + qmpSocket + ": " + client.error().desc);
	(*client)->setCommandTimeout(monitorTimeout);
	std::shared_ptr<QemuDriver> d(new QemuDriver(std::move(*client), qmpSocket, workDir));
	d->self_ = d;
	return d;
}

Result<std::shared_ptr<QemuDriver>> QemuDriver::connectStorageDaemon(const std::string &qmpSocket,
								       const fs::path &workDir, InstanceInfo instance,
								       std::vector<std::string> nodes)
{
	VS_ASSIGN(auto d, connect(qmpSocket, workDir));
	d->fixedInstance_ = std::move(instance);
	d->nodes_ = std::move(nodes);
	return d;
}

QemuDriver::~QemuDriver() = default;

// "/machine/peripheral/vda/virtio-backend" -> "vda"
std::string qdevId(const std::string &qdev)
{
	const std::string prefix = "/machine/peripheral/";
	if (qdev.rfind(prefix, 0) != 0)
		return "";
	std::string rest = qdev.substr(prefix.size());
	return rest.substr(0, rest.find('/'));
}

std::vector<BitmapInfo> bitmapsFromQmp(const Json &list)
{
	std::vector<BitmapInfo> out;
	for (size_t k = 0; k < list.size(); k++) {
		Json bm = list.at(k);
		out.push_back(BitmapInfo{bm.getString("name").value_or(""),
					 uint64_t(bm.getInt("granularity").value_or(0)),
					 bm.getBool("persistent").value_or(false), bm.getBool("recording").value_or(false),
					 bm.getBool("busy").value_or(false), bm.getBool("inconsistent").value_or(false)});
	}
	return out;
}


Result<InstanceInfo> QemuDriver::instance()
{
	std::lock_guard lock(mutex_);
	if (fixedInstance_)
		return *fixedInstance_;
	InstanceInfo info;
	auto status = qmp_->execute("query-status");
	if (!status)
		return qmpFail("query-status", status.error());
	info.status = status->getString("status").value_or("");
	info.hibernated = info.status == "suspended";
	if (auto name = qmp_->execute("query-name"))
		info.name = name->getString("name").value_or("");
	if (auto uuid = qmp_->execute("query-uuid"))
		info.uuid = uuid->getString("UUID").value_or("");
	if (!info.uuid.empty() && info.uuid != "00000000-0000-0000-0000-000000000000")
		info.key = "uuid:" + info.uuid;
	else if (!info.name.empty())
		info.key = "name:" + info.name;
	else
		info.key = "socket:" + fs::weakly_canonical(socket_).string();
	return info;
}

Result<std::vector<DiskInfo>> QemuDriver::disks()
{
	std::lock_guard lock(mutex_);
	return disksLocked();
}

Result<DiskInfo> QemuDriver::disk(const std::string &diskId)
{
	std::lock_guard lock(mutex_);
	return diskLocked(diskId);
}

namespace {

// A storage daemon has no devices: its disks are named format nodes.
Result<std::vector<DiskInfo>> nodeDisks(qmp::QmpClient &qmp, const std::vector<std::string> &names)
{
	Json a = args();
	a.set("flat", Json::boolean(true));
	auto nodes = qmp.execute("query-named-block-nodes", a);
	if (!nodes)
		return qmpFail("query-named-block-nodes", nodes.error());
	std::vector<DiskInfo> out;
	for (const std::string &name : names)
		for (size_t i = 0; i < nodes->size(); i++) {
			Json n = nodes->at(i);
			if (n.getString("node-name") != name)
				continue;
			DiskInfo d;
			d.diskId = d.nodeName = name;
			d.format = n.getString("drv").value_or("");
			d.filename = n.getString("file").value_or("");
			d.size = uint64_t(n.get("image").getInt("virtual-size").value_or(0));
			d.bitmaps = bitmapsFromQmp(n.get("dirty-bitmaps"));
			d.encrypted = n.getBool("encrypted").value_or(false);
			out.push_back(std::move(d));
		}
	return out;
}

} // namespace

Result<std::vector<DiskInfo>> QemuDriver::disksLocked()
{
	if (fixedInstance_)
		return nodeDisks(*qmp_, nodes_);
	auto blocks = qmp_->execute("query-block");
	if (!blocks)
		return qmpFail("query-block", blocks.error());
	std::vector<DiskInfo> out;
	for (size_t i = 0; i < blocks->size(); i++) {
		Json b = blocks->at(i);
		Json inserted = b.get("inserted");
		if (inserted.isNull())
			continue;
		DiskInfo d;
		d.nodeName = inserted.getString("node-name").value_or("");
		std::string qdev = qdevId(b.getString("qdev").value_or(""));
		d.diskId = !qdev.empty() ? qdev : d.nodeName;
		d.format = inserted.getString("drv").value_or("");
		d.filename = inserted.getString("file").value_or("");
		d.size = uint64_t(inserted.get("image").getInt("virtual-size").value_or(0));
		d.bitmaps = bitmapsFromQmp(inserted.get("dirty-bitmaps"));
		d.encrypted = inserted.getBool("encrypted").value_or(false);
		if (!qdev.empty()) {
			Json a = args();
			a.set("path", Json::string("/machine/peripheral/" + qdev));
			a.set("property", Json::string("bootindex"));
			if (auto idx = qmp_->execute("qom-get", a))
				d.bootIndex = int(idx->asInt());
		}
		out.push_back(std::move(d));
	}
	return out;
}

Result<DiskInfo> QemuDriver::diskLocked(const std::string &diskId)
{
	VS_ASSIGN(auto all, disksLocked());
	return findDisk(std::move(all), diskId, describe());
}

Result<std::string> QemuDriver::acquireNbdLocked()
{
	if (workDir_.empty())
		return fail(errc::kInternal, "this QEMU driver was connected without a work directory");
	fs::path sock = workDir_ / "nbd.sock";
	if (nbdUsers_ == 0) {
		::unlink(sock.c_str());
		Json data = Json::object();
		data.set("path", Json::string(sock.string()));
		Json addr = Json::object();
		addr.set("type", Json::string("unix"));
		addr.set("data", data);
		Json start = args();
		start.set("addr", addr);
		if (auto r = qmp_->execute("nbd-server-start", start); !r)
			return qmpFail("start the NBD server", r.error());
	}
	nbdUsers_++;
	return sock.string();
}

void QemuDriver::releaseNbdLocked()
{
	if (--nbdUsers_ == 0) {
		(void)qmp_->execute("nbd-server-stop"); // teardown: best effort, like every step of it
		::unlink((workDir_ / "nbd.sock").c_str());
	}
}

void QemuDriver::removeLeftovers(const std::string &cleanupRecord)
{
	auto record = Json::parse(cleanupRecord);
	if (!record)
		return;
	std::lock_guard lock(mutex_);
	Json disks = record->get("disks");
	std::vector<std::string> jobs;
	for (size_t i = 0; i < disks.size(); i++) {
		deleteExport(*qmp_, disks.at(i).getString("export_id").value_or(""));
		jobs.push_back(disks.at(i).getString("job_id").value_or(""));
	}
	// The NBD server of a dead process serves nobody now, unless a live
	// capture of this driver uses it.
	if (nbdUsers_ == 0) {
		auto exports = qmp_->execute("query-block-exports");
		if (exports && exports->size() == 0)
			(void)qmp_->execute("nbd-server-stop");
	}
	cancelJobs(*qmp_, jobs);
	// The dead process's private directories go too, once emptied; rmdir
	// never removes anything else.
	auto removeFileAndDir = [](const std::string &file) {
		if (file.empty())
			return;
		::unlink(file.c_str());
		fs::path dir = fs::path(file).parent_path();
		if (dir.filename().string().rfind("virtsnap-", 0) == 0)
			::rmdir(dir.c_str());
	};
	for (size_t i = 0; i < disks.size(); i++) {
		Json d = disks.at(i);
		deleteNode(*qmp_, d.getString("scratch_node").value_or(""));
		deleteSecret(*qmp_, d.getString("scratch_secret").value_or(""));
		removeFileAndDir(d.getString("scratch_file").value_or(""));
		removeBitmap(*qmp_, d.getString("format_node").value_or(""), d.getString("new_bitmap").value_or(""));
	}
	removeFileAndDir(record->getString("nbd_socket").value_or(""));
}

std::unique_ptr<Quiescer> QemuDriver::quiescer(QuiesceMode mode, std::chrono::milliseconds timeout,
					       const std::string &qgaSocket)
{
	return std::make_unique<GuestAgentQuiescer>(qgaSocket, mode, timeout);
}

Result<std::unique_ptr<Capture>> QemuDriver::capture(const CaptureSpec &spec)
{
	if (spec.disks.empty())
		return fail(errc::kInvalidParameterValue, "no disk to capture");
	auto cap = std::make_unique<QemuCapture>(self_.lock());
	std::lock_guard lock(mutex_);
	// Scratch overlays come before the freeze, so the guest is frozen for
	// the transaction only. What a step made, the capture's destructor
	// undoes if a later step fails.
	VS_TRY(nameDisksLocked(*cap, spec));
	if (spec.beforeChanges)
		VS_TRY(spec.beforeChanges(cap->cleanupRecord()));
	VS_TRY(addScratchLocked(*cap, spec.scratchDir));
	VS_TRY(pointInTimeLocked(*cap, spec.quiescer));
	VS_TRY(exportLocked(*cap));
	return std::unique_ptr<Capture>(std::move(cap));
}

Result<void> QemuDriver::nameDisksLocked(QemuCapture &cap, const CaptureSpec &spec)
{
	const std::vector<CaptureRequest> &requests = spec.disks;
	for (size_t i = 0; i < requests.size(); i++) {
		VS_ASSIGN(const DiskInfo info, diskLocked(requests[i].diskId));
		std::string tag = "vs" + requests[i].newBitmap.substr(requests[i].newBitmap.find('-') + 1);
		std::string n = std::to_string(i);
		QemuCapture::Disk d;
		d.request = requests[i];
		d.size = info.size;
		d.encrypted = info.encrypted;
		d.names = {requests[i].diskId, info.nodeName, tag + "s" + n, tag + "j" + n, tag + "e" + n,
			   tag + "x" + n, requests[i].newBitmap, spec.scratchDir / (tag + "s" + n + ".qcow2"),
			   info.encrypted ? tag + "k" + n : ""};
		cap.disks_.push_back(d);
	}
	return {};
}

namespace {

// QEMU's `secret` object `id`, holding a new random key: given over the
// monitor (object-add, its data base64), never in argv or a file. The same
// key comes back in a memfd, for qemu-img.
Result<UniqueFd> addRandomSecret(qmp::QmpClient &qmp, const std::string &id)
{
	VS_ASSIGN(const std::string key, randomScratchKey());
	VS_ASSIGN(UniqueFd fd, secretMemfd(key));
	Json a = args();
	a.set("qom-type", Json::string("secret"));
	a.set("id", Json::string(id));
	a.set("format", Json::string("base64"));
	const auto bytes = std::span(reinterpret_cast<const uint8_t *>(key.data()), key.size());
	a.set("data", Json::string(crypto::base64(bytes)));
	if (auto r = qmp.execute("object-add", a); !r)
		return qmpFail("add the scratch key", r.error());
	return fd;
}

Json scratchEncryption(const std::string &secretId)
{
	Json encrypt = Json::object();
	encrypt.set("format", Json::string("luks"));
	encrypt.set("key-secret", Json::string(secretId));
	return encrypt;
}

} // namespace

Result<void> QemuDriver::addScratchLocked(QemuCapture &cap, const fs::path &scratchDir)
{
	for (QemuCapture::Disk &disk : cap.disks_) {
		const std::string file = disk.names.scratchFile.string();
		Result<void> made;
		// An encrypted disk's scratch takes its decrypted data: it is
		// encrypted too (scratch_key.h).
		if (disk.encrypted) {
			auto key = addRandomSecret(*qmp_, disk.names.scratchSecret);
			if (!key)
				return fail(key.error().code,
					    "disk " + disk.request.diskId + ": " + key.error().message);
			disk.scratchSecretAdded = true;
			disk.scratchFileMade = true;
			made = createLuksQcow2(
				{file, disk.size, key->get(), kScratchLuksIterTime, "cluster_size=65536", {}},
				errc::kHypervisor);
		} else {
			disk.scratchFileMade = true;
			auto plain = runProgram({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536",
						 file, std::to_string(disk.size)},
						errc::kHypervisor);
			if (!plain)
				made = std::unexpected(plain.error());
		}
		if (!made)
			return fail(errc::kHypervisor, "disk " + disk.request.diskId +
							       ": cannot create its scratch file in " +
							       scratchDir.string() + ": " + made.error().message);

		Json fileNode = Json::object();
		fileNode.set("driver", Json::string("file"));
		fileNode.set("filename", Json::string(file));
		Json a = args();
		a.set("driver", Json::string("qcow2"));
		a.set("node-name", Json::string(disk.names.scratchNode));
		a.set("file", fileNode);
		a.set("backing", Json::string(disk.names.formatNode));
		if (disk.encrypted)
			a.set("encrypt", scratchEncryption(disk.names.scratchSecret));
		if (auto r = qmp_->execute("blockdev-add", a); !r)
			return qmpFail("disk " + disk.request.diskId + ": add its scratch node", r.error());
		disk.scratchNodeAdded = true;
	}
	return {};
}

Json QemuDriver::transactionActions(const QemuCapture &cap)
{
	Json actions = Json::array();
	for (const QemuCapture::Disk &d : cap.disks_) {
		Json add = args();
		add.set("node", Json::string(d.names.formatNode));
		add.set("name", Json::string(d.names.newBitmap));
		add.set("persistent", Json::boolean(d.request.persistent));
		if (d.request.granularity)
			add.set("granularity", Json::integer(int64_t(d.request.granularity)));
		actions.append(action("block-dirty-bitmap-add", add));
		if (!d.request.parentBitmap.empty()) {
			// The export bitmap is a frozen copy of the parent's at
			// this instant: disabled, so nothing after it counts.
			Json exp = args();
			exp.set("node", Json::string(d.names.scratchNode));
			exp.set("name", Json::string(d.names.exportBitmap));
			exp.set("disabled", Json::boolean(true));
			actions.append(action("block-dirty-bitmap-add", exp));
			Json src = Json::object();
			src.set("node", Json::string(d.names.formatNode));
			src.set("name", Json::string(d.request.parentBitmap));
			Json merge = args();
			merge.set("node", Json::string(d.names.scratchNode));
			merge.set("target", Json::string(d.names.exportBitmap));
			merge.set("bitmaps", Json::array().append(src));
			actions.append(action("block-dirty-bitmap-merge", merge));
		}
		Json backup = args();
		backup.set("device", Json::string(d.names.formatNode));
		backup.set("target", Json::string(d.names.scratchNode));
		backup.set("sync", Json::string("none"));
		backup.set("job-id", Json::string(d.names.jobId));
		actions.append(action("blockdev-backup", backup));
	}
	return actions;
}

Result<void> QemuDriver::pointInTimeLocked(QemuCapture &cap, Quiescer *quiescer)
{
	Json t = args();
	t.set("actions", transactionActions(cap));
	Result<void> frozen;
	if (quiescer)
		frozen = quiescer->freeze();
	if (!frozen) {
		quiescer->thaw();
		return std::unexpected(frozen.error());
	}
	auto done = qmp_->execute("transaction", t);
	if (quiescer)
		quiescer->thaw();
	if (!done) {
		// QEMU names the node that refused; name the disk as the user knows it.
		std::string who;
		for (const QemuCapture::Disk &d : cap.disks_)
			if (done.error().desc.find("'" + d.names.formatNode + "'") != std::string::npos ||
			    done.error().desc.find("'" + d.names.scratchNode + "'") != std::string::npos)
				who = "disk " + d.request.diskId + ": ";
		return qmpFail(who + "the point-in-time transaction failed", done.error());
	}
	for (QemuCapture::Disk &d : cap.disks_)
		d.transactionDone = true;
	return {};
}

Result<void> QemuDriver::exportLocked(QemuCapture &cap)
{
	VS_ASSIGN(const std::string nbd, acquireNbdLocked());
	cap.usesNbd_ = true;
	for (QemuCapture::Disk &d : cap.disks_) {
		Json e = args();
		e.set("type", Json::string("nbd"));
		e.set("id", Json::string(d.names.exportId));
		e.set("node-name", Json::string(d.names.scratchNode));
		e.set("name", Json::string(d.names.exportId));
		e.set("writable", Json::boolean(false));
		if (!d.request.parentBitmap.empty())
			e.set("bitmaps", Json::array().append(Json::string(d.names.exportBitmap)));
		if (auto r = qmp_->execute("block-export-add", e); !r)
			return qmpFail("disk " + d.request.diskId + ": export it", r.error());
		d.exported = true;
		cap.exports_.push_back(DiskExport{
			d.request.diskId, nbd, d.names.exportId, d.size,
			d.request.parentBitmap.empty() ? "" : "qemu:dirty-bitmap:" + d.names.exportBitmap,
			qmp_->commandTimeout()});
	}
	return {};
}

} // namespace virtsnap::hypervisor
