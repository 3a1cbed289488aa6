#include "admission.h"

namespace virtsnap::daemon {

Result<void> Admission::admit(const std::vector<std::string> &volumes, const Limits &limits)
{
	std::lock_guard lock(mutex_);
	for (const std::string &vol : volumes) {
		VS_ASSIGN(int pending, limits.pending(vol));
		auto admitted = admitted_.find(vol);
		int counted = pending + (admitted == admitted_.end() ? 0 : admitted->second);
		std::string volumeClass;
		int limit = limits.limit(vol, &volumeClass);
		if (counted >= limit)
			return fail(errc::kConcurrentLimit, "volume " + vol + " already has " + std::to_string(counted) +
								    " pending snapshots (the limit is " + std::to_string(limit) +
								    " for class " + volumeClass + ")");
	}
	for (const std::string &vol : volumes)
		admitted_[vol]++;
	return {};
}

Result<void> Admission::settle(const std::vector<std::string> &volumes, const std::function<Result<void>()> &record)
{
	std::lock_guard lock(mutex_);
	auto recorded = record();
	withdrawLocked(volumes);
	return recorded;
}

void Admission::withdraw(const std::vector<std::string> &volumes)
{
	std::lock_guard lock(mutex_);
	withdrawLocked(volumes);
}

void Admission::withdrawLocked(const std::vector<std::string> &volumes)
{
	for (const std::string &vol : volumes)
		if (auto it = admitted_.find(vol); it != admitted_.end() && --it->second <= 0)
			admitted_.erase(it);
}

bool Admission::tryClaim(const std::vector<std::string> &claims)
{
	std::lock_guard lock(mutex_);
	return tryClaimLocked(claims);
}

bool Admission::tryClaimLocked(const std::vector<std::string> &claims)
{
	if (gcActive_)
		return false;
	for (const std::string &c : claims)
		if (capturing_.count(c))
			return false;
	capturing_.insert(claims.begin(), claims.end());
	return true;
}

bool Admission::waitClaim(const std::vector<std::string> &claims, const std::function<bool()> &stop)
{
	std::unique_lock lock(mutex_);
	bool claimed = false;
	changed_.wait(lock, [&] {
		if (stop())
			return true;
		claimed = tryClaimLocked(claims);
		return claimed;
	});
	return claimed;
}

void Admission::release(const std::vector<std::string> &claims)
{
	std::lock_guard lock(mutex_);
	for (const std::string &c : claims)
		capturing_.erase(c);
	changed_.notify_all();
}

bool Admission::capturing(const std::string &claim)
{
	std::lock_guard lock(mutex_);
	return capturing_.count(claim) != 0;
}

void Admission::wake()
{
	// Under the lock its waiters hold, so none misses the wakeup.
	std::lock_guard lock(mutex_);
	changed_.notify_all();
}

Result<void> Admission::beginGc()
{
	std::lock_guard lock(mutex_);
	if (!capturing_.empty() || !admitted_.empty())
		return fail(errc::kIncorrectState, "snapshots are in flight; run gc once they have completed");
	gcActive_ = true;
	return {};
}

void Admission::endGc()
{
	std::lock_guard lock(mutex_);
	gcActive_ = false;
	changed_.notify_all();
}

Result<void> Admission::beginRestore(const std::string &instanceKey, const std::string &described)
{
	std::lock_guard lock(mutex_);
	if (!restoring_.insert(instanceKey).second)
		return fail(errc::kIncorrectState, "another restore-instance of " + described + " is running");
	return {};
}

void Admission::endRestore(const std::string &instanceKey)
{
	std::lock_guard lock(mutex_);
	restoring_.erase(instanceKey);
}

bool Admission::restoring(const std::string &instanceKey)
{
	std::lock_guard lock(mutex_);
	return restoring_.count(instanceKey) != 0;
}

} // namespace virtsnap::daemon
