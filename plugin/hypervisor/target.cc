#include "target.h"

#include "libvirt_driver.h"
#include "qemu_driver.h"

namespace virtsnap::hypervisor {

namespace {
constexpr std::string_view kLibvirtPrefix = "libvirt:";
}

std::string Target::key() const
{
	if (!isLibvirt())
		return qmpSocket;
	return std::string(kLibvirtPrefix) + libvirtUri + "#" + domain;
}

Target Target::parse(const std::string &key)
{
	Target t;
	if (key.rfind(kLibvirtPrefix, 0) != 0) {
		t.qmpSocket = key;
		return t;
	}
	std::string rest = key.substr(kLibvirtPrefix.size());
	size_t hash = rest.rfind('#');
	t.libvirtUri = rest.substr(0, hash);
	t.domain = hash == std::string::npos ? "" : rest.substr(hash + 1);
	return t;
}

Result<std::shared_ptr<Driver>> connectDriver(const Target &target, const std::filesystem::path &workDir,
					      std::chrono::milliseconds monitorTimeout)
{
	if (target.isLibvirt()) {
		VS_ASSIGN(auto d, LibvirtDriver::connect(target.libvirtUri, target.domain, monitorTimeout));
		return std::shared_ptr<Driver>(std::move(d));
	}
	VS_ASSIGN(auto d, QemuDriver::connect(target.qmpSocket, workDir, monitorTimeout));
	return std::shared_ptr<Driver>(std::move(d));
}

} // namespace virtsnap::hypervisor
