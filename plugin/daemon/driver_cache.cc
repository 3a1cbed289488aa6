#include "driver_cache.h"

#include "engine/work_dir.h"

namespace virtsnap::daemon {

Result<std::shared_ptr<hypervisor::Driver>> DriverCache::get(const hypervisor::Target &target)
{
	std::lock_guard lock(mutex_);
	if (shared_)
		if (auto d = drivers_[target.key()].lock())
			return d;
	// The driver's NBD socket lives in a directory as long as the driver.
	VS_ASSIGN(auto work, engine::WorkDir::create());
	VS_ASSIGN(auto driver, hypervisor::connectDriver(target, work->path(), monitorTimeout_));
	driver->holdWhileAlive(std::shared_ptr<engine::WorkDir>(std::move(work)));
	if (shared_)
		drivers_[target.key()] = driver;
	return driver;
}

} // namespace virtsnap::daemon
