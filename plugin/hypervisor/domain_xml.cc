#include "domain_xml.h"

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <memory>

namespace virtsnap::hypervisor {

namespace {

struct DocFree {
	void operator()(xmlDoc *d) const { xmlFreeDoc(d); }
};
struct XPathContextFree {
	void operator()(xmlXPathContext *c) const { xmlXPathFreeContext(c); }
};
struct XPathObjectFree {
	void operator()(xmlXPathObject *o) const { xmlXPathFreeObject(o); }
};

class XmlDocument
{
public:
	static Result<XmlDocument> parse(const std::string &text, const char *what)
	{
		XmlDocument d;
		d.doc_.reset(xmlReadMemory(text.data(), int(text.size()), nullptr, nullptr,
					   XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
		if (!d.doc_)
			return fail(errc::kHypervisor, std::string("libvirt gave ") + what + " that is not XML");
		d.ctx_.reset(xmlXPathNewContext(d.doc_.get()));
		return d;
	}

	std::vector<xmlNode *> nodes(const char *xpath, xmlNode *from = nullptr) const
	{
		ctx_->node = from ? from : xmlDocGetRootElement(doc_.get());
		std::unique_ptr<xmlXPathObject, XPathObjectFree> r(xmlXPathEvalExpression(BAD_CAST xpath, ctx_.get()));
		std::vector<xmlNode *> out;
		if (r && r->nodesetval)
			for (int i = 0; i < r->nodesetval->nodeNr; i++)
				out.push_back(r->nodesetval->nodeTab[i]);
		return out;
	}

	// The text of the first match: an attribute's value or an element's content.
	std::string text(const char *xpath, xmlNode *from = nullptr) const
	{
		auto found = nodes(xpath, from);
		if (found.empty())
			return "";
		xmlChar *content = xmlNodeGetContent(found.front());
		std::string s = content ? reinterpret_cast<const char *>(content) : "";
		xmlFree(content);
		return s;
	}

private:
	std::unique_ptr<xmlDoc, DocFree> doc_;
	std::unique_ptr<xmlXPathContext, XPathContextFree> ctx_;
};

} // namespace

Result<DomainDescription> parseDomainXml(const std::string &xml)
{
	auto doc = XmlDocument::parse(xml, "a domain description");
	if (!doc)
		return std::unexpected(doc.error());
	DomainDescription d;
	d.name = doc->text("/domain/name");
	d.uuid = doc->text("/domain/uuid");
	d.suspendToDiskEnabled = doc->text("/domain/pm/suspend-to-disk/@enabled") == "yes";
	for (xmlNode *n : doc->nodes("/domain/devices/disk[@device='disk' or not(@device)]")) {
		DomainDisk disk;
		disk.target = doc->text("target/@dev", n);
		disk.alias = doc->text("alias/@name", n);
		disk.source = doc->text("source/@file", n);
		if (disk.source.empty())
			disk.source = doc->text("source/@dev", n);
		disk.format = doc->text("driver/@type", n);
		std::string order = doc->text("boot/@order", n);
		if (!order.empty())
			disk.bootOrder = std::atoi(order.c_str());
		if (!disk.target.empty())
			d.disks.push_back(disk);
	}
	if (d.uuid.empty())
		return fail(errc::kHypervisor, "libvirt's description of domain '" + d.name + "' has no UUID");
	return d;
}

Result<CheckpointDescription> parseCheckpointXml(const std::string &xml)
{
	auto doc = XmlDocument::parse(xml, "a checkpoint description");
	if (!doc)
		return std::unexpected(doc.error());
	CheckpointDescription c;
	c.name = doc->text("/domaincheckpoint/name");
	for (xmlNode *n : doc->nodes("/domaincheckpoint/disks/disk[@checkpoint='bitmap']"))
		c.disks.push_back(doc->text("@name", n));
	return c;
}


} // namespace virtsnap::hypervisor
