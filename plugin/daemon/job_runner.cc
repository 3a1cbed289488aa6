#include "job_runner.h"

#include <system_error>

namespace virtsnap::daemon {

JobRunner::~JobRunner()
{
	shutdown();
	std::list<Worker> workers;
	{
		std::lock_guard lock(mutex_);
		workers.swap(workers_);
	}
	for (Worker &w : workers)
		w.thread.join();
}

JobRunner::CancelFlag JobRunner::enroll(const std::string &jobId, const std::string &instanceKey)
{
	auto cancel = std::make_shared<std::atomic<bool>>(false);
	std::lock_guard lock(mutex_);
	jobs_[jobId] = cancel;
	if (!instanceKey.empty())
		instanceOf_[jobId] = instanceKey;
	return cancel;
}

void JobRunner::retire(const std::string &jobId)
{
	std::lock_guard lock(mutex_);
	jobs_.erase(jobId);
	instanceOf_.erase(jobId);
	cancelReasons_.erase(jobId);
	changed_.notify_all();
}

bool JobRunner::enrolled(const std::string &jobId) const
{
	std::lock_guard lock(mutex_);
	return jobs_.count(jobId) != 0;
}

size_t JobRunner::running() const
{
	std::lock_guard lock(mutex_);
	return jobs_.size();
}

void JobRunner::start(std::function<void()> work, const std::function<void()> &inlineInstead)
{
	std::unique_lock lock(mutex_);
	reapFinishedLocked();
	Worker &w = workers_.emplace_back();
	try {
		w.thread = std::thread([this, &w, work = std::move(work)] {
			work();
			std::lock_guard done(mutex_);
			w.finished = true;
		});
	} catch (const std::system_error &) {
		workers_.pop_back();
		lock.unlock();
		inlineInstead();
	}
}

void JobRunner::reapFinishedLocked()
{
	// A finished worker's thread has set the flag as its very last step
	// under this lock, so joining it here waits for nothing that needs it.
	for (auto it = workers_.begin(); it != workers_.end();) {
		if (!it->finished) {
			++it;
			continue;
		}
		it->thread.join();
		it = workers_.erase(it);
	}
}

int JobRunner::cancelInstance(const std::string &instanceKey, const std::string &reason)
{
	std::lock_guard lock(mutex_);
	int cancelled = 0;
	for (const auto &[jobId, key] : instanceOf_)
		if (key == instanceKey && !cancelReasons_.count(jobId)) {
			cancelReasons_[jobId] = reason;
			jobs_[jobId]->store(true);
			cancelled++;
		}
	changed_.notify_all();
	return cancelled;
}

std::string JobRunner::cancelReason(const std::string &jobId) const
{
	std::lock_guard lock(mutex_);
	auto it = cancelReasons_.find(jobId);
	return it == cancelReasons_.end() ? "" : it->second;
}

JobRunner::Slot::Slot(JobRunner &runner, const CancelFlag &cancel) : runner_(runner)
{
	// A cancelled job takes a slot anyway: it only unwinds in it.
	std::unique_lock lock(runner_.mutex_);
	runner_.changed_.wait(lock, [&] { return runner_.transfers_ < runner_.maxTransfers_ || cancel->load(); });
	runner_.transfers_++;
}

JobRunner::Slot::~Slot()
{
	std::lock_guard lock(runner_.mutex_);
	runner_.transfers_--;
	runner_.changed_.notify_all();
}

void JobRunner::shutdown()
{
	std::lock_guard lock(mutex_);
	for (auto &[id, cancel] : jobs_)
		cancel->store(true);
	changed_.notify_all();
}

} // namespace virtsnap::daemon
