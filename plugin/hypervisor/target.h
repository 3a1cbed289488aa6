// Which instance a command means and how to reach it: a plain QEMU's QMP
// socket, or a libvirt domain by name or UUID. Job and volume records keep
// it as a string (key()) so a later process can reach the instance again.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "capture.h"

namespace virtsnap::hypervisor {

struct Target {
	std::string qmpSocket;
	std::string libvirtUri;
	std::string domain; // name or UUID

	bool isLibvirt() const { return !domain.empty(); }
	// "/run/vm1.qmp", or "libvirt:qemu:///system#vm1"
	std::string key() const;
	static Target parse(const std::string &key);
};

// `workDir` (private, short path) holds the NBD socket of the driver's
// captures.
Result<std::shared_ptr<Driver>> connectDriver(const Target &target, const std::filesystem::path &workDir,
					      std::chrono::milliseconds monitorTimeout = kDefaultMonitorTimeout);

} // namespace virtsnap::hypervisor
