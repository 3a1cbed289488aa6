// The domain's checkpoints, named after what virtsnap records as the bitmap
// of a snapshot (libvirt_driver.h): listed, redefined where libvirt lost
// one, dropped once nothing continues from them. A checkpoint is defined
// by the backup job that starts it (libvirt_backup_capture.cc).
#include <algorithm>
#include <ctime>
#include <map>
#include <set>

#include "core/ids.h"
#include "libvirt_internal.h"

namespace virtsnap::hypervisor {

namespace {

// Names virtsnap gives checkpoints and bitmaps: anything else is the user's.
bool ours(const std::string &name)
{
	return isSnapshotId(name) || isSnapshotSetId(name);
}

bool contains(const std::vector<std::string> &v, const std::string &s)
{
	return std::find(v.begin(), v.end(), s) != v.end();
}

} // namespace

Result<std::vector<CheckpointDescription>> LibvirtDomain::checkpointsLocked()
{
	virDomainCheckpointPtr *list = nullptr;
	int n = virDomainListAllCheckpoints(dom_, &list, 0);
	if (n < 0)
		return libvirtFail("list the checkpoints of " + describe());
	std::vector<CheckpointDescription> out;
	for (int i = 0; i < n; i++) {
		char *xml = virDomainCheckpointGetXMLDesc(list[i], VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN);
		if (xml) {
			auto c = parseCheckpointXml(xml);
			free(xml);
			if (c)
				out.push_back(*c);
		}
		virDomainCheckpointFree(list[i]);
	}
	free(list);
	return out;
}

Result<void> LibvirtDomain::redefineLocked(const std::string &name, const std::vector<std::string> &disks)
{
	VS_ASSIGN(const DomainDescription desc, description());
	CheckpointDefinition redefined{name, {}, int64_t(std::time(nullptr))};
	for (const DomainDisk &d : desc.disks)
		redefined.disks.push_back({d.target, contains(disks, d.target)});
	std::string xml = checkpointXml(redefined);
	virDomainCheckpointPtr cp =
		virDomainCheckpointCreateXML(dom_, xml.c_str(), VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE);
	if (!cp)
		return libvirtFail("redefine checkpoint " + name + " of " + describe());
	virDomainCheckpointFree(cp);
	return {};
}

void LibvirtDomain::dropCheckpointLocked(const std::string &name)
{
	// Best effort: a QEMU that does not answer keeps the checkpoint, which
	// a later commit or reconcile drops as unneeded.
	(void)monitorCall("the deletion of checkpoint " + name, [name](virDomainPtr dom, std::string *) {
		virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom, name.c_str(), 0);
		if (!cp)
			return 0;
		int rc = virDomainCheckpointDelete(cp, 0);
		if (rc < 0) {
			// A disk lost the bitmap already (a crash, a replaced
			// image): forget the checkpoint, and let the next commit
			// remove what bitmaps of it remain, as orphans.
			rc = virDomainCheckpointDelete(cp, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
		}
		virDomainCheckpointFree(cp);
		return rc;
	});
}

void LibvirtDomain::dropUnneededLocked(const std::vector<std::string> &keep)
{
	auto cps = checkpointsLocked();
	if (cps)
		for (const CheckpointDescription &c : *cps)
			if (ours(c.name) && !contains(keep, c.name))
				dropCheckpointLocked(c.name);
	// Bitmaps of ours that no checkpoint names: libvirt removes bitmaps
	// only through a checkpoint, so one is redefined to be deleted.
	auto disks = disksLocked();
	cps = checkpointsLocked();
	if (!disks || !cps)
		return;
	std::map<std::string, std::vector<std::string>> orphans;
	for (const DiskInfo &d : *disks)
		for (const BitmapInfo &b : d.bitmaps)
			if (ours(b.name) && !contains(keep, b.name) &&
			    std::none_of(cps->begin(), cps->end(),
					 [&](const CheckpointDescription &c) { return c.name == b.name; }))
				orphans[b.name].push_back(d.diskId);
	for (const auto &[name, disksOf] : orphans)
		if (redefineLocked(name, disksOf))
			dropCheckpointLocked(name);
}

Result<std::vector<std::string>> LibvirtDomain::reconcileLocked(const std::vector<std::string> &needed)
{
	std::vector<std::string> notes;
	VS_ASSIGN(const std::vector<CheckpointDescription> cps, checkpointsLocked());
	VS_ASSIGN(const std::vector<DiskInfo> disks, disksLocked());
	std::set<std::string> known;
	for (const CheckpointDescription &c : cps)
		known.insert(c.name);
	for (const std::string &name : std::set<std::string>(needed.begin(), needed.end())) {
		if (known.count(name))
			continue;
		std::vector<std::string> holders;
		for (const DiskInfo &d : disks)
			if (const BitmapInfo *b = d.bitmap(name); b && !b->inconsistent)
				holders.push_back(d.diskId);
		if (holders.empty())
			continue; // nothing to continue from: planning takes those disks in full
		// A transient domain, a libvirt reinstall, or a snapshot taken
		// while the domain was off: the bitmaps are there, the
		// checkpoint is not.
		if (auto r = redefineLocked(name, holders); !r)
			notes.push_back(r.error().message);
		else
			notes.push_back("redefined checkpoint " + name + " that libvirt did not know");
	}
	return notes;
}

void LibvirtDomain::forgetCheckpointsLocked()
{
	auto cps = checkpointsLocked();
	if (!cps)
		return;
	for (const CheckpointDescription &c : *cps)
		if (virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom_, c.name.c_str(), 0)) {
			virDomainCheckpointDelete(cp, VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY);
			virDomainCheckpointFree(cp);
		}
}

} // namespace virtsnap::hypervisor
