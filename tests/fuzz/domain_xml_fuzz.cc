// libvirt's XML as virtsnap reads it: domains, checkpoints, backup jobs.
#include "fuzz_util.h"
#include "hypervisor/domain_xml.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const std::string xml(fuzz::textOf(data, size));
	if (auto domain = hypervisor::parseDomainXml(xml)) {
		for (const hypervisor::DomainDisk &disk : domain->disks)
			fuzz::check(!disk.target.empty(), "a disk has a target");
	}
	(void)hypervisor::parseCheckpointXml(xml);
	(void)hypervisor::parseBackupXml(xml);
	return 0;
}
