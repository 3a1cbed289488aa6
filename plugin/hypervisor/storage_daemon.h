// A qemu-storage-daemon serving an instance's image files while the
// instance is off, so a shut-off domain is captured with the same QMP
// sequence as a running QEMU. It must end with `quit`: persistent bitmaps
// reach the qcow2 only on a clean close.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/process.h"

namespace virtsnap::hypervisor {

struct StorageDaemonDisk {
	std::string node; // format node name, used as the disk id
	std::string file;
	std::string format;
	// An encrypted image's passphrase ("": not encrypted): a qcow2 with
	// LUKS encryption, or a LUKS image ("raw" to libvirt).
	std::string passphrase;
};

class StorageDaemon
{
public:
	// Starts it with `disks` opened read-write and a QMP monitor in `dir`;
	// returns once the monitor answers. The images' write locks keep
	// libvirt from starting the domain meanwhile.
	static Result<std::unique_ptr<StorageDaemon>> start(const std::vector<StorageDaemonDisk> &disks,
							     const std::filesystem::path &dir);
	// quit over QMP, SIGKILL if it has not exited after 30 s.
	~StorageDaemon();

	const std::string &qmpSocket() const { return qmpSocket_; }

private:
	StorageDaemon(Process process, std::string qmpSocket)
		: process_(std::move(process)), qmpSocket_(std::move(qmpSocket))
	{
	}
	Process process_;
	std::string qmpSocket_;
};

} // namespace virtsnap::hypervisor
