#include "qemu_driver.h"

#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/process.h"

namespace virtsnap::hypervisor {

using qmp::Json;
namespace fs = std::filesystem;

namespace {

constexpr std::chrono::milliseconds kTeardownTimeout{10000};

std::unexpected<Error> qmpFail(const std::string &what, const qmp::Error &e)
{
	return fail(errc::kHypervisor, what + ": " + e.desc);
}

// "/machine/peripheral/vda/virtio-backend" -> "vda"
std::string qdevId(const std::string &qdev)
{
	const std::string prefix = "/machine/peripheral/";
	if (qdev.rfind(prefix, 0) != 0)
		return "";
	std::string rest = qdev.substr(prefix.size());
	return rest.substr(0, rest.find('/'));
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

class QemuCapture : public Capture
{
public:
	struct Disk {
		CaptureRequest request;
		std::string formatNode;
		std::string scratchNode;
		fs::path scratchFile;
		std::string jobId;
		std::string exportId;
		uint64_t size = 0;
		bool scratchFileMade = false;
		bool scratchNodeAdded = false;
		bool transactionDone = false;
		bool exported = false;
	};

	explicit QemuCapture(qmp::QmpClient &qmp) : qmp_(qmp) {}
	~QemuCapture() override { teardown(); }

	const std::vector<DiskExport> &exports() const override { return exports_; }

	Result<void> commit() override
	{
		committed_ = true;
		Result<void> result;
		for (const Disk &d : disks_) {
			std::vector<std::string> names = d.request.obsoleteBitmaps;
			if (!d.request.parentBitmap.empty())
				names.push_back(d.request.parentBitmap);
			for (const std::string &name : names) {
				Json a = args();
				a.set("node", Json::string(d.formatNode));
				a.set("name", Json::string(name));
				auto r = qmp_.execute("block-dirty-bitmap-remove", a);
				if (!r && result)
					result = qmpFail("remove bitmap " + name + " of " + d.request.diskId, r.error());
			}
		}
		return result;
	}

	std::vector<Disk> disks_;
	std::vector<DiskExport> exports_;
	fs::path nbdSocket_;
	bool nbdStarted_ = false;

private:
	void teardown()
	{
		for (Disk &d : disks_) {
			if (!d.exported)
				continue;
			Json a = args();
			a.set("id", Json::string(d.exportId));
			if (qmp_.execute("block-export-del", a)) {
				// Deletion completes asynchronously; the scratch node
				// stays busy until it has.
				qmp_.waitEvent("BLOCK_EXPORT_DELETED",
					       [&](const Json &data) { return data.getString("id") == d.exportId; },
					       kTeardownTimeout);
			}
		}
		if (nbdStarted_) {
			qmp_.execute("nbd-server-stop");
			::unlink(nbdSocket_.c_str());
		}
		for (Disk &d : disks_) {
			if (!d.transactionDone)
				continue;
			Json a = args();
			a.set("device", Json::string(d.jobId));
			a.set("force", Json::boolean(true));
			qmp_.execute("block-job-cancel", a);
		}
		for (Disk &d : disks_)
			if (d.transactionDone)
				waitJobGone(d.jobId);
		for (Disk &d : disks_) {
			if (d.scratchNodeAdded) {
				Json a = args();
				a.set("node-name", Json::string(d.scratchNode));
				qmp_.execute("blockdev-del", a);
			}
			if (d.scratchFileMade)
				::unlink(d.scratchFile.c_str());
			if (d.transactionDone && !committed_) {
				Json a = args();
				a.set("node", Json::string(d.formatNode));
				a.set("name", Json::string(d.request.newBitmap));
				qmp_.execute("block-dirty-bitmap-remove", a);
			}
		}
	}

	void waitJobGone(const std::string &jobId)
	{
		auto deadline = std::chrono::steady_clock::now() + kTeardownTimeout;
		while (std::chrono::steady_clock::now() < deadline) {
			auto jobs = qmp_.execute("query-block-jobs");
			if (!jobs)
				return;
			bool present = false;
			for (size_t i = 0; i < jobs->size(); i++)
				present |= jobs->at(i).getString("device") == jobId;
			if (!present)
				return;
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
		}
	}

	qmp::QmpClient &qmp_;
	bool committed_ = false;
};

} // namespace

Result<std::unique_ptr<QemuDriver>> QemuDriver::connect(const std::string &qmpSocket)
{
	auto client = qmp::QmpClient::connect(qmpSocket);
	if (!client)
		return fail(errc::kHypervisor, "cannot reach QEMU at " + qmpSocket + ": " + client.error().desc);
	return std::unique_ptr<QemuDriver>(new QemuDriver(std::move(*client), qmpSocket));
}

Result<InstanceInfo> QemuDriver::instance()
{
	InstanceInfo info;
	auto status = qmp_->execute("query-status");
	if (!status)
		return qmpFail("query-status", status.error());
	info.status = status->getString("status").value_or("");
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
		Json bitmaps = inserted.get("dirty-bitmaps");
		for (size_t k = 0; k < bitmaps.size(); k++) {
			Json bm = bitmaps.at(k);
			d.bitmaps.push_back(BitmapInfo{bm.getString("name").value_or(""),
						       uint64_t(bm.getInt("granularity").value_or(0)),
						       bm.getBool("persistent").value_or(false),
						       bm.getBool("recording").value_or(false),
						       bm.getBool("busy").value_or(false),
						       bm.getBool("inconsistent").value_or(false)});
		}
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

Result<DiskInfo> QemuDriver::disk(const std::string &diskId)
{
	auto all = disks();
	if (!all)
		return std::unexpected(all.error());
	std::string names;
	for (DiskInfo &d : *all) {
		if (d.diskId == diskId || d.nodeName == diskId)
			return std::move(d);
		names += (names.empty() ? "" : ", ") + d.diskId;
	}
	return fail(errc::kDiskNotFound, "no disk '" + diskId + "' in the instance at " + socket_ +
						 (names.empty() ? " (it has no disks)" : " (it has: " + names + ")"));
}

Result<std::unique_ptr<Capture>> QemuDriver::capture(const std::vector<CaptureRequest> &requests,
						      const fs::path &workDir, Quiescer *quiescer)
{
	if (requests.empty())
		return fail(errc::kInvalidParameterValue, "no disk to capture");
	// Node names are limited to 31 characters: "vs" + the 17 digits of the
	// first new bitmap's snapshot id + a role letter + the disk's position.
	std::string tag = requests[0].newBitmap;
	tag = tag.substr(tag.find('-') + 1);
	auto cap = std::make_unique<QemuCapture>(*qmp_);

	// Scratch overlays come before the freeze, so the guest is frozen for
	// the transaction only.
	for (size_t i = 0; i < requests.size(); i++) {
		auto info = disk(requests[i].diskId);
		if (!info)
			return std::unexpected(info.error());
		QemuCapture::Disk d;
		d.request = requests[i];
		d.formatNode = info->nodeName;
		d.size = info->size;
		std::string n = std::to_string(i);
		d.scratchNode = "vs" + tag + "s" + n;
		d.jobId = "vs" + tag + "j" + n;
		d.exportId = "vs" + tag + "e" + n;
		d.scratchFile = workDir / (d.scratchNode + ".qcow2");
		cap->disks_.push_back(d);
		QemuCapture::Disk &disk = cap->disks_.back();

		auto made = runProgram({"qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536",
					disk.scratchFile.string(), std::to_string(info->size)},
				       errc::kHypervisor);
		if (!made)
			return fail(errc::kHypervisor, "cannot create the scratch file for disk " + disk.request.diskId +
							       " in " + workDir.string() + ": " + made.error().message);
		disk.scratchFileMade = true;

		Json file = Json::object();
		file.set("driver", Json::string("file"));
		file.set("filename", Json::string(disk.scratchFile.string()));
		Json a = args();
		a.set("driver", Json::string("qcow2"));
		a.set("node-name", Json::string(disk.scratchNode));
		a.set("file", file);
		a.set("backing", Json::string(disk.formatNode));
		if (auto r = qmp_->execute("blockdev-add", a); !r)
			return qmpFail("add the scratch node of disk " + disk.request.diskId, r.error());
		disk.scratchNodeAdded = true;
	}

	Json actions = Json::array();
	for (const QemuCapture::Disk &d : cap->disks_) {
		Json add = args();
		add.set("node", Json::string(d.formatNode));
		add.set("name", Json::string(d.request.newBitmap));
		add.set("persistent", Json::boolean(d.request.persistent));
		if (d.request.granularity)
			add.set("granularity", Json::integer(int64_t(d.request.granularity)));
		actions.append(action("block-dirty-bitmap-add", add));
		if (!d.request.parentBitmap.empty()) {
			// The export bitmap is a frozen copy of the parent's at
			// this instant: disabled, so nothing after it counts.
			Json exp = args();
			exp.set("node", Json::string(d.scratchNode));
			exp.set("name", Json::string(d.scratchNode + "x"));
			exp.set("disabled", Json::boolean(true));
			actions.append(action("block-dirty-bitmap-add", exp));
			Json src = Json::object();
			src.set("node", Json::string(d.formatNode));
			src.set("name", Json::string(d.request.parentBitmap));
			Json merge = args();
			merge.set("node", Json::string(d.scratchNode));
			merge.set("target", Json::string(d.scratchNode + "x"));
			merge.set("bitmaps", Json::array().append(src));
			actions.append(action("block-dirty-bitmap-merge", merge));
		}
		Json backup = args();
		backup.set("device", Json::string(d.formatNode));
		backup.set("target", Json::string(d.scratchNode));
		backup.set("sync", Json::string("none"));
		backup.set("job-id", Json::string(d.jobId));
		actions.append(action("blockdev-backup", backup));
	}

	Result<void> frozen;
	if (quiescer)
		frozen = quiescer->freeze();
	if (!frozen) {
		quiescer->thaw();
		return std::unexpected(frozen.error());
	}
	Json t = args();
	t.set("actions", actions);
	auto done = qmp_->execute("transaction", t);
	if (quiescer)
		quiescer->thaw();
	if (!done) {
		// QEMU names the node that refused; name the disk as the user knows it.
		std::string who;
		for (const QemuCapture::Disk &d : cap->disks_)
			if (done.error().desc.find("'" + d.formatNode + "'") != std::string::npos ||
			    done.error().desc.find("'" + d.scratchNode + "'") != std::string::npos)
				who = "disk " + d.request.diskId + ": ";
		return qmpFail(who + "the point-in-time transaction failed", done.error());
	}
	for (QemuCapture::Disk &d : cap->disks_)
		d.transactionDone = true;

	cap->nbdSocket_ = workDir / ("vs" + tag + ".nbd");
	::unlink(cap->nbdSocket_.c_str());
	Json data = Json::object();
	data.set("path", Json::string(cap->nbdSocket_.string()));
	Json addr = Json::object();
	addr.set("type", Json::string("unix"));
	addr.set("data", data);
	Json start = args();
	start.set("addr", addr);
	if (auto r = qmp_->execute("nbd-server-start", start); !r)
		return qmpFail("start the NBD server", r.error());
	cap->nbdStarted_ = true;

	for (QemuCapture::Disk &d : cap->disks_) {
		Json e = args();
		e.set("type", Json::string("nbd"));
		e.set("id", Json::string(d.exportId));
		e.set("node-name", Json::string(d.scratchNode));
		e.set("name", Json::string(d.request.diskId));
		e.set("writable", Json::boolean(false));
		if (!d.request.parentBitmap.empty())
			e.set("bitmaps", Json::array().append(Json::string(d.scratchNode + "x")));
		if (auto r = qmp_->execute("block-export-add", e); !r)
			return qmpFail("export disk " + d.request.diskId, r.error());
		d.exported = true;
		cap->exports_.push_back(DiskExport{
			d.request.diskId, cap->nbdSocket_.string(), d.request.diskId, d.size,
			d.request.parentBitmap.empty() ? "" : "qemu:dirty-bitmap:" + d.scratchNode + "x"});
	}
	return std::unique_ptr<Capture>(std::move(cap));
}

} // namespace virtsnap::hypervisor
