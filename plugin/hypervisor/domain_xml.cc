#include "domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
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

// A document built element by element; libxml2 escapes what it writes.
class XmlBuilder
{
public:
	explicit XmlBuilder(const char *rootName) : doc_(xmlNewDoc(BAD_CAST "1.0"))
	{
		xmlDocSetRootElement(doc_.get(), xmlNewDocNode(doc_.get(), nullptr, BAD_CAST rootName, nullptr));
	}

	xmlNode *root() const { return xmlDocGetRootElement(doc_.get()); }

	// An element with `text` for its content ("" = empty).
	static xmlNode *add(xmlNode *parent, const char *name, const std::string &text = "")
	{
		return xmlNewTextChild(parent, nullptr, BAD_CAST name, text.empty() ? nullptr : BAD_CAST text.c_str());
	}

	static void set(xmlNode *node, const char *name, const std::string &value)
	{
		xmlNewProp(node, BAD_CAST name, BAD_CAST value.c_str());
	}

	std::string dump() const
	{
		xmlChar *mem = nullptr;
		int size = 0;
		xmlDocDumpMemoryEnc(doc_.get(), &mem, &size, "UTF-8");
		std::string out = mem ? std::string(reinterpret_cast<const char *>(mem), size_t(size)) : "";
		xmlFree(mem);
		return out;
	}

private:
	std::unique_ptr<xmlDoc, DocFree> doc_;
};

} // namespace

Result<DomainDescription> parseDomainXml(const std::string &xml)
{
	VS_ASSIGN(auto doc, XmlDocument::parse(xml, "a domain description"));
	DomainDescription d;
	d.name = doc.text("/domain/name");
	d.uuid = doc.text("/domain/uuid");
	d.suspendToDiskEnabled = doc.text("/domain/pm/suspend-to-disk/@enabled") == "yes";
	const std::string codes = std::string("/domain/metadata/*[local-name()='product-codes' and namespace-uri()='") +
				  kProductCodesMetadataNamespace + "']/*[local-name()='product-code']";
	for (xmlNode *n : doc.nodes(codes.c_str())) {
		auto code = parseProductCode(doc.text(".", n));
		if (!code)
			return fail(errc::kInvalidParameterValue,
				    "domain '" + d.name + "' has a bad product code in its metadata: " + code.error().message);
		addProductCodes(d.productCodes, {*code});
	}
	for (xmlNode *n : doc.nodes("/domain/devices/disk[@device='disk' or not(@device)]")) {
		DomainDisk disk;
		disk.target = doc.text("target/@dev", n);
		disk.alias = doc.text("alias/@name", n);
		disk.source = doc.text("source/@file", n);
		if (disk.source.empty())
			disk.source = doc.text("source/@dev", n);
		disk.format = doc.text("driver/@type", n);
		for (const char *where : {"source/encryption", "encryption"})
			if (disk.encryptionFormat.empty()) {
				disk.encryptionFormat = doc.text((std::string(where) + "/@format").c_str(), n);
				disk.encryptionSecret = doc.text((std::string(where) + "/secret/@uuid").c_str(), n);
			}
		std::string order = doc.text("boot/@order", n);
		if (!order.empty())
			disk.bootOrder = std::atoi(order.c_str());
		if (!disk.target.empty())
			d.disks.push_back(disk);
	}
	if (d.uuid.empty())
		return fail(errc::kHypervisor, "libvirt's description of domain '" + d.name + "' has no UUID");
	return d;
}

Result<std::vector<std::pair<std::string, std::string>>> parsePolicyMetadata(const std::string &xml)
{
	VS_ASSIGN(auto doc, XmlDocument::parse(xml, "policy metadata"));
	std::vector<std::pair<std::string, std::string>> tags;
	// local-name(): libvirt gives the element back with or without the
	// namespace prefix it was set with.
	for (xmlNode *n : doc.nodes("/*[local-name()='policy']/*[local-name()='tag']"))
		tags.emplace_back(doc.text("@key", n), doc.text("@value", n));
	return tags;
}

Result<CheckpointDescription> parseCheckpointXml(const std::string &xml)
{
	VS_ASSIGN(auto doc, XmlDocument::parse(xml, "a checkpoint description"));
	CheckpointDescription c;
	c.name = doc.text("/domaincheckpoint/name");
	for (xmlNode *n : doc.nodes("/domaincheckpoint/disks/disk[@checkpoint='bitmap']"))
		c.disks.push_back(doc.text("@name", n));
	return c;
}

Result<BackupDescription> parseBackupXml(const std::string &xml)
{
	VS_ASSIGN(auto doc, XmlDocument::parse(xml, "a backup job description"));
	return BackupDescription{doc.text("/domainbackup/server/@socket")};
}

std::string checkpointXml(const CheckpointDefinition &checkpoint)
{
	XmlBuilder b("domaincheckpoint");
	XmlBuilder::add(b.root(), "name", checkpoint.name);
	if (checkpoint.creationTime)
		XmlBuilder::add(b.root(), "creationTime", std::to_string(*checkpoint.creationTime));
	xmlNode *disks = XmlBuilder::add(b.root(), "disks");
	for (const CheckpointDisk &d : checkpoint.disks) {
		xmlNode *disk = XmlBuilder::add(disks, "disk");
		XmlBuilder::set(disk, "name", d.target);
		XmlBuilder::set(disk, "checkpoint", d.bitmap ? "bitmap" : "no");
		if (d.bitmap && checkpoint.creationTime)
			XmlBuilder::set(disk, "bitmap", checkpoint.name);
	}
	return b.dump();
}

std::string backupXml(const std::string &socket, const std::vector<BackupDisk> &disks)
{
	XmlBuilder b("domainbackup");
	XmlBuilder::set(b.root(), "mode", "pull");
	xmlNode *server = XmlBuilder::add(b.root(), "server");
	XmlBuilder::set(server, "transport", "unix");
	XmlBuilder::set(server, "socket", socket);
	xmlNode *list = XmlBuilder::add(b.root(), "disks");
	for (const BackupDisk &d : disks) {
		xmlNode *disk = XmlBuilder::add(list, "disk");
		XmlBuilder::set(disk, "name", d.target);
		XmlBuilder::set(disk, "backup", d.backup ? "yes" : "no");
		if (!d.backup)
			continue;
		XmlBuilder::set(disk, "type", "file");
		XmlBuilder::set(disk, "exportname", d.exportName);
		XmlBuilder::set(disk, "backupmode", d.incremental.empty() ? "full" : "incremental");
		if (!d.incremental.empty()) {
			XmlBuilder::set(disk, "incremental", d.incremental);
			XmlBuilder::set(disk, "exportbitmap", d.exportBitmap);
		}
		xmlNode *scratch = XmlBuilder::add(disk, "scratch");
		XmlBuilder::set(scratch, "file", d.scratchFile);
		if (!d.scratchSecret.empty()) {
			xmlNode *encryption = XmlBuilder::add(scratch, "encryption");
			XmlBuilder::set(encryption, "format", "luks");
			xmlNode *secret = XmlBuilder::add(encryption, "secret");
			XmlBuilder::set(secret, "type", "passphrase");
			XmlBuilder::set(secret, "uuid", d.scratchSecret);
		}
	}
	return b.dump();
}

} // namespace virtsnap::hypervisor
