// The jobs of this process: which are running, their cancel flags, the
// instance each works on and why one was cancelled; the transfer slots
// (--max-parallel-jobs); and the threads background jobs run on, which the
// runner owns and joins: no thread outlives it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace virtsnap::daemon {

class JobRunner
{
public:
	using CancelFlag = std::shared_ptr<std::atomic<bool>>;

	explicit JobRunner(unsigned maxTransfers) : maxTransfers_(maxTransfers) {}
	// shutdown(), then joins every thread.
	~JobRunner();
	JobRunner(const JobRunner &) = delete;
	JobRunner &operator=(const JobRunner &) = delete;

	// A job of this process starts: its cancel flag. `instanceKey` is what
	// it snapshots, so a stop of that instance can cancel it.
	CancelFlag enroll(const std::string &jobId, const std::string &instanceKey = "");
	// The last thing a job does.
	void retire(const std::string &jobId);
	bool enrolled(const std::string &jobId) const;
	size_t running() const;

	// Runs `work` on a thread of the runner's. Without a thread to be had,
	// runs `inline` here instead (late, but whole).
	void start(std::function<void()> work, const std::function<void()> &inlineInstead);

	// Cancels every job of the instance not cancelled yet, with `reason`
	// for their StateMessage; returns how many.
	int cancelInstance(const std::string &instanceKey, const std::string &reason);
	// Why a job was cancelled ("" when it was not, or not for a reason a
	// user should read).
	std::string cancelReason(const std::string &jobId) const;

	// Holds one of the --max-parallel-jobs transfer slots until destroyed;
	// waits for one, or until the job is cancelled.
	class Slot
	{
	public:
		Slot(JobRunner &runner, const CancelFlag &cancel);
		~Slot();
		Slot(const Slot &) = delete;
		Slot &operator=(const Slot &) = delete;

	private:
		JobRunner &runner_;
	};

	// Cancels every job and wakes whatever waits for a slot.
	void shutdown();

private:
	void reapFinishedLocked();

	const unsigned maxTransfers_;
	mutable std::mutex mutex_;
	std::condition_variable changed_;
	std::map<std::string, CancelFlag> jobs_;
	std::map<std::string, std::string> instanceOf_;
	std::map<std::string, std::string> cancelReasons_;
	unsigned transfers_ = 0;

	struct Worker {
		std::thread thread;
		bool finished = false;
	};
	std::list<Worker> workers_;
};

} // namespace virtsnap::daemon
