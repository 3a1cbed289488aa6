// The running domains whose metadata opts them in to lifecycle policies.
#include <libvirt/virterror.h>

#include <cstdlib>

#include "libvirt_driver.h"
#include "libvirt_internal.h"

namespace virtsnap::hypervisor {

namespace {

// Errors are returned, never printed by libvirt's default handler.
void quietErrors(void *, virErrorPtr) {}

// The domain's policy tags; nullopt when it has no policy metadata.
Result<std::optional<TaggedDomain>> taggedDomain(virDomainPtr dom)
{
	char *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, kPolicyMetadataNamespace, 0);
	if (!xml) {
		// No metadata, or a domain gone (a transient one that stopped)
		// since it was listed: not one to snapshot now.
		const int code = virGetLastErrorCode();
		if (code == VIR_ERR_NO_DOMAIN_METADATA || code == VIR_ERR_NO_DOMAIN)
			return std::optional<TaggedDomain>();
		auto failed = libvirtFail(std::string("domain ") + virDomainGetName(dom) + ": its metadata");
		// One that stopped meanwhile (a persistent one) is skipped too; the
		// error was taken first, as this call replaces libvirt's last one.
		if (virDomainIsActive(dom) == 0)
			return std::optional<TaggedDomain>();
		return failed;
	}
	std::string text = xml;
	std::free(xml);
	TaggedDomain d;
	d.name = virDomainGetName(dom);
	char uuid[VIR_UUID_STRING_BUFLEN];
	if (virDomainGetUUIDString(dom, uuid) != 0)
		return libvirtFail("domain " + d.name + ": its UUID");
	d.uuid = uuid;
	VS_ASSIGN(d.tags, parsePolicyMetadata(text));
	return std::optional<TaggedDomain>(std::move(d));
}

} // namespace

Result<std::vector<TaggedDomain>> listTaggedDomains(const std::string &uri,
						   const std::function<void(const std::string &)> &warn)
{
	virSetErrorFunc(nullptr, quietErrors);
	virConnectPtr conn = virConnectOpen(uri.c_str());
	if (!conn) {
		warn("no domain is targeted by its metadata: cannot connect to libvirt at " + uri + ": " +
		     lastLibvirtError());
		return std::vector<TaggedDomain>();
	}
	virDomainPtr *doms = nullptr;
	int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0) {
		auto failed = libvirtFail("listing the domains at " + uri);
		virConnectClose(conn);
		return failed;
	}
	Result<std::vector<TaggedDomain>> out = std::vector<TaggedDomain>();
	for (int i = 0; i < n; i++) {
		auto d = out ? taggedDomain(doms[i]) : Result<std::optional<TaggedDomain>>(std::nullopt);
		if (!d)
			out = std::unexpected(d.error());
		else if (*d)
			out->push_back(std::move(**d));
		virDomainFree(doms[i]);
	}
	std::free(doms);
	virConnectClose(conn);
	return out;
}

} // namespace virtsnap::hypervisor
