// The domain as libvirt describes it: its XML, its run state, and its disks
// with their sizes and bitmaps.
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include <string.h>

#include <map>

#include "core/process.h"
#include "json/json.h"
#include "libvirt_internal.h"
#include "qemu_driver.h"

namespace virtsnap::hypervisor {

namespace {

// An image's bitmaps as qemu-img reads them from a closed qcow2: "in-use"
// on a closed image means QEMU did not close it cleanly.
std::vector<BitmapInfo> imageBitmaps(const Json &info)
{
	std::vector<BitmapInfo> out;
	Json list = info.get("format-specific").get("data").get("bitmaps");
	for (size_t i = 0; i < list.size(); i++) {
		Json b = list.at(i);
		BitmapInfo bm;
		bm.name = b.getString("name").value_or("");
		bm.granularity = uint64_t(b.getInt("granularity").value_or(0));
		bm.persistent = true;
		Json flags = b.get("flags");
		for (size_t k = 0; k < flags.size(); k++) {
			std::string f = flags.at(k).asString();
			bm.recording |= f == "auto";
			bm.inconsistent |= f == "in-use";
		}
		out.push_back(bm);
	}
	return out;
}

// Sizes and bitmaps of a shut-off domain's disks, from their images.
Result<void> readClosedImages(std::vector<DiskInfo> &disks, const std::string &where)
{
	for (DiskInfo &d : disks) {
		auto info = runProgram({"qemu-img", "info", "--output=json", "-U", d.filename}, errc::kHypervisor);
		if (!info)
			return fail(errc::kHypervisor,
				    "disk " + d.diskId + " of " + where + ": " + info.error().message);
		auto j = Json::parse(*info);
		if (!j)
			return fail(errc::kHypervisor, "qemu-img info of " + d.filename + " is not JSON");
		d.size = uint64_t(j->getInt("virtual-size").value_or(0));
		d.bitmaps = imageBitmaps(*j);
		d.encrypted |= j->getBool("encrypted").value_or(false);
	}
	return {};
}

} // namespace

Result<Json> LibvirtDomain::queryBlock()
{
	VS_ASSIGN(const std::string reply, monitorCall("query-block", [](virDomainPtr dom, std::string *text) {
		char *out = nullptr;
		int rc = virDomainQemuMonitorCommand(dom, R"({"execute":"query-block"})", &out, 0);
		if (out)
			*text = out;
		free(out);
		return rc;
	}));
	auto j = Json::parse(reply);
	if (!j)
		return fail(errc::kHypervisor, "query-block of " + describe() + " is not JSON");
	return j->get("return");
}

namespace {

// Sizes and bitmap states of a running domain's disks, by read-only QMP
// through libvirt: the libvirt API does not give the bitmaps, and the sizes
// come with them from the same bounded call.
Result<void> readRunningDisks(LibvirtDomain &domain, const DomainDescription &desc, std::vector<DiskInfo> &disks)
{
	const std::string where = domain.describe();
	VS_ASSIGN(Json blocks, domain.queryBlock());
	std::map<std::string, std::string> targetOfAlias;
	for (const DomainDisk &dd : desc.disks)
		targetOfAlias[dd.alias] = dd.target;
	for (size_t i = 0; i < blocks.size(); i++) {
		Json b = blocks.at(i);
		auto target = targetOfAlias.find(qdevId(b.getString("qdev").value_or("")));
		if (target == targetOfAlias.end())
			continue;
		Json inserted = b.get("inserted");
		for (DiskInfo &d : disks) {
			if (d.diskId != target->second)
				continue;
			d.size = uint64_t(inserted.get("image").getInt("virtual-size").value_or(0));
			d.bitmaps = bitmapsFromQmp(inserted.get("dirty-bitmaps"));
			d.encrypted |= inserted.getBool("encrypted").value_or(false);
		}
	}
	return {};
}

} // namespace

std::string lastLibvirtError()
{
	const char *m = virGetLastErrorMessage();
	return m ? m : "unknown libvirt error";
}

std::unexpected<Error> libvirtFail(const std::string &what)
{
	return fail(errc::kHypervisor, what + ": " + lastLibvirtError());
}

LibvirtDomain::~LibvirtDomain()
{
	virDomainFree(dom_);
	virConnectClose(conn_);
}

std::string LibvirtDomain::describe() const
{
	const char *name = virDomainGetName(dom_);
	return "domain '" + std::string(name ? name : "?") + "'";
}

Result<DomainDescription> LibvirtDomain::description()
{
	char *xml = virDomainGetXMLDesc(dom_, 0);
	if (!xml)
		return libvirtFail("read the description of " + describe());
	std::string text = xml;
	free(xml);
	return parseDomainXml(text);
}

Result<std::string> LibvirtDomain::state()
{
	int state = 0, reason = 0;
	if (virDomainGetState(dom_, &state, &reason, 0) < 0)
		return libvirtFail("read the state of " + describe());
	switch (state) {
	case VIR_DOMAIN_RUNNING: return std::string("running");
	case VIR_DOMAIN_BLOCKED: return std::string("blocked");
	case VIR_DOMAIN_PAUSED: return std::string("paused");
	case VIR_DOMAIN_SHUTDOWN: return std::string("shutting down");
	case VIR_DOMAIN_SHUTOFF: return std::string("shut off");
	case VIR_DOMAIN_CRASHED: return std::string("crashed");
	case VIR_DOMAIN_PMSUSPENDED: return std::string("pmsuspended");
	default: return std::string("unknown");
	}
}

Result<std::vector<DiskInfo>> LibvirtDomain::configuredDisks()
{
	VS_ASSIGN(const DomainDescription desc, description());
	std::vector<DiskInfo> out;
	for (const DomainDisk &dd : desc.disks) {
		DiskInfo d;
		d.diskId = dd.target;
		d.nodeName = dd.target;
		d.format = dd.format;
		d.filename = dd.source;
		d.bootIndex = dd.bootOrder;
		d.encrypted = !dd.encryptionFormat.empty();
		d.encryptionSecret = dd.encryptionSecret;
		out.push_back(d);
	}
	return out;
}

Result<std::vector<DiskInfo>> LibvirtDomain::disksLocked()
{
	VS_ASSIGN(const DomainDescription desc, description());
	VS_ASSIGN(const std::string st, state());
	VS_ASSIGN(std::vector<DiskInfo> out, configuredDisks());
	if (st == "shut off")
		VS_TRY(readClosedImages(out, describe()));
	else
		VS_TRY(readRunningDisks(*this, desc, out));
	return out;
}

} // namespace virtsnap::hypervisor

namespace virtsnap::hypervisor {

Result<std::optional<std::string>> LibvirtDomain::secretValue(const std::string &uuid)
{
	virSecretPtr secret = virSecretLookupByUUIDString(conn_, uuid.c_str());
	if (!secret)
		return libvirtFail("look up libvirt secret " + uuid);
	size_t size = 0;
	unsigned char *value = virSecretGetValue(secret, &size, 0);
	virSecretFree(secret);
	if (!value)
		return std::optional<std::string>(); // private, or no value set
	std::string out(reinterpret_cast<const char *>(value), size);
	explicit_bzero(value, size);
	free(value);
	return std::optional<std::string>(std::move(out));
}

Result<void> LibvirtDomain::defineSecret(const std::string &uuid, const std::string &value)
{
	const std::string xml = "<secret ephemeral='yes' private='yes'><uuid>" + uuid +
				"</uuid><description>virtsnap capture scratch</description></secret>";
	virSecretPtr secret = virSecretDefineXML(conn_, xml.c_str(), 0);
	if (!secret)
		return libvirtFail("define libvirt secret " + uuid);
	int set = virSecretSetValue(secret, reinterpret_cast<const unsigned char *>(value.data()), value.size(), 0);
	if (set < 0) {
		auto failed = libvirtFail("set the value of libvirt secret " + uuid);
		virSecretUndefine(secret);
		virSecretFree(secret);
		return failed;
	}
	virSecretFree(secret);
	return {};
}

void LibvirtDomain::undefineSecret(const std::string &uuid)
{
	if (uuid.empty())
		return;
	if (virSecretPtr secret = virSecretLookupByUUIDString(conn_, uuid.c_str())) {
		virSecretUndefine(secret);
		virSecretFree(secret);
	}
}

} // namespace virtsnap::hypervisor
