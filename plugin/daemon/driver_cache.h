// One hypervisor driver per instance (its monitor connection and NBD
// server), shared by every request for that instance while any holds it.
// In-process runs (the CLI) get a fresh driver per request.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "hypervisor/target.h"

namespace virtsnap::daemon {

class DriverCache
{
public:
	DriverCache(bool shared, std::chrono::milliseconds monitorTimeout)
		: shared_(shared), monitorTimeout_(monitorTimeout)
	{
	}
	Result<std::shared_ptr<hypervisor::Driver>> get(const hypervisor::Target &target);

private:
	const bool shared_;
	const std::chrono::milliseconds monitorTimeout_;
	std::mutex mutex_;
	std::map<std::string, std::weak_ptr<hypervisor::Driver>> drivers_;
};

} // namespace virtsnap::daemon
