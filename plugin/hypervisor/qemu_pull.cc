// A plain QEMU's part of instant restore: the restored image opened as a
// node (blockdev-add; its backing, the served snapshot, from its header),
// and block-stream copying the backing's data into it. The job does not
// dismiss itself, so that its end (and its error) is read here, once.
#include "qemu_driver.h"

namespace virtsnap::hypervisor {

namespace {

std::unexpected<Error> pullQmpFail(const std::string &what, const qmp::Error &e)
{
	return fail(errc::kHypervisor, what + ": " + e.desc);
}

std::string pullJobId(const std::string &node)
{
	return "vs-pull-" + node;
}

Json pullJobArgs(const std::string &node)
{
	Json a = Json::object();
	a.set("id", Json::string(pullJobId(node)));
	return a;
}

// The job's entry in query-jobs, or null.
Result<Json> findPullJob(qmp::QmpClient &qmp, const std::string &node)
{
	auto jobs = qmp.execute("query-jobs");
	if (!jobs)
		return pullQmpFail("query-jobs", jobs.error());
	for (size_t i = 0; i < jobs->size(); i++)
		if (jobs->at(i).getString("id") == pullJobId(node))
			return jobs->at(i);
	return Json();
}

// Whether `node` still reads from a backing image. (Not while a stream
// job on it is concluded and not dismissed: QEMU 7.2 crashes in
// query-named-block-nodes then.)
Result<bool> hasBacking(qmp::QmpClient &qmp, const std::string &node)
{
	Json a = Json::object();
	a.set("flat", Json::boolean(true));
	auto nodes = qmp.execute("query-named-block-nodes", a);
	if (!nodes)
		return pullQmpFail("query-named-block-nodes", nodes.error());
	for (size_t i = 0; i < nodes->size(); i++)
		if (nodes->at(i).getString("node-name") == node)
			return nodes->at(i).has("backing_file");
	return fail(errc::kDiskNotFound, "QEMU has no node " + node);
}

} // namespace

std::string QemuDriver::pullNodeLocked(const std::string &disk)
{
	auto d = diskLocked(disk);
	return d ? d->nodeName : disk;
}

Result<void> QemuDriver::openImage(const std::string &node, const std::filesystem::path &file)
{
	std::lock_guard lock(mutex_);
	Json f = Json::object();
	f.set("driver", Json::string("file"));
	f.set("filename", Json::string(file.string()));
	Json a = Json::object();
	a.set("driver", Json::string("qcow2"));
	a.set("node-name", Json::string(node));
	a.set("file", f);
	if (auto r = qmp_->execute("blockdev-add", a); !r)
		return pullQmpFail("open " + file.string() + " as node " + node, r.error());
	return {};
}

void QemuDriver::closeImage(const std::string &node)
{
	std::lock_guard lock(mutex_);
	Json a = Json::object();
	a.set("node-name", Json::string(node));
	(void)qmp_->execute("blockdev-del", a); // undoing a failed start: best effort
}

Result<void> QemuDriver::startPull(const std::string &disk, uint64_t bytesPerSecond)
{
	std::lock_guard lock(mutex_);
	std::string node = pullNodeLocked(disk);
	VS_ASSIGN(Json job, findPullJob(*qmp_, node));
	if (!job.isNull()) {
		if (job.getString("status") != "concluded")
			return {}; // running already
		(void)qmp_->execute("job-dismiss", pullJobArgs(node)); // a failed run: this one resumes it
	}
	Json a = Json::object();
	a.set("job-id", Json::string(pullJobId(node)));
	a.set("device", Json::string(node));
	a.set("auto-dismiss", Json::boolean(false));
	if (bytesPerSecond)
		a.set("speed", Json::integer(int64_t(bytesPerSecond)));
	if (auto r = qmp_->execute("block-stream", a); !r)
		return pullQmpFail("start copying " + node + " from its backing (block-stream)", r.error());
	return {};
}

Result<PullStatus> QemuDriver::pullStatus(const std::string &disk)
{
	std::lock_guard lock(mutex_);
	std::string node = pullNodeLocked(disk);
	VS_ASSIGN(Json job, findPullJob(*qmp_, node));
	PullStatus s;
	if (job.isNull()) {
		// Gone without our reading its end (QEMU restarted, or someone
		// dismissed it): the image tells.
		VS_ASSIGN(bool backed, hasBacking(*qmp_, node));
		s.state = backed ? PullStatus::State::Failed : PullStatus::State::Done;
		if (backed)
			s.error = "no copy job runs on " + node + " and it still has its backing";
		return s;
	}
	s.done = uint64_t(job.getInt("current-progress").value_or(0));
	s.total = uint64_t(job.getInt("total-progress").value_or(0));
	if (job.getString("status") != "concluded")
		return s;
	s.state = job.has("error") ? PullStatus::State::Failed : PullStatus::State::Done;
	s.error = job.getString("error").value_or("");
	(void)qmp_->execute("job-dismiss", pullJobArgs(node)); // read once
	return s;
}

} // namespace virtsnap::hypervisor
