#include "s3_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>

namespace virtsnap::store::s3 {

namespace {

struct FreeDoc {
	void operator()(xmlDoc *doc) const { xmlFreeDoc(doc); }
};
using Doc = std::unique_ptr<xmlDoc, FreeDoc>;

Doc parse(std::span<const uint8_t> xml)
{
	if (xml.empty())
		return nullptr;
	// NONET and no entity substitution: the answer is data, never a way
	// to make us fetch or expand something.
	return Doc(xmlReadMemory((const char *)xml.data(), int(xml.size()), "s3.xml", nullptr,
				 XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS));
}

// Elements by local name: S3 puts everything in its 2006-03-01 namespace,
// RGW sometimes none.
bool named(const xmlNode *node, const char *name)
{
	return node->type == XML_ELEMENT_NODE && std::strcmp((const char *)node->name, name) == 0;
}

std::string textOf(const xmlNode *node)
{
	xmlChar *content = xmlNodeGetContent(node);
	std::string out = content ? (const char *)content : "";
	xmlFree(content);
	return out;
}

Result<ObjectInfo> parseContents(const xmlNode *contents)
{
	ObjectInfo info;
	bool haveKey = false, haveSize = false;
	for (const xmlNode *c = contents->children; c; c = c->next) {
		if (named(c, "Key")) {
			info.name = textOf(c);
			haveKey = true;
		} else if (named(c, "Size")) {
			std::string size = textOf(c);
			char *end = nullptr;
			info.size = std::strtoull(size.c_str(), &end, 10);
			haveSize = !size.empty() && *end == '\0';
		} else if (named(c, "LastModified")) {
			auto when = parseIsoTime(textOf(c));
			if (!when)
				return fail(errc::kCorrupt, "a listing gives '" + textOf(c) + "' as a time");
			info.modified = *when;
		}
	}
	if (!haveKey || !haveSize)
		return fail(errc::kCorrupt, "a listing names an object without its key or size");
	return info;
}

} // namespace

void initXml()
{
	xmlInitParser();
}

Result<ListPage> parseListPage(std::span<const uint8_t> xml)
{
	Doc doc = parse(xml);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
	if (!root || !named(root, "ListBucketResult"))
		return fail(errc::kCorrupt, "the endpoint answered a listing with something else than a listing");
	ListPage page;
	for (const xmlNode *c = root->children; c; c = c->next) {
		if (named(c, "Contents")) {
			VS_ASSIGN(ObjectInfo info, parseContents(c));
			page.objects.push_back(std::move(info));
		} else if (named(c, "IsTruncated")) {
			page.truncated = textOf(c) == "true";
		} else if (named(c, "NextContinuationToken")) {
			page.nextContinuationToken = textOf(c);
		}
	}
	if (page.truncated && page.nextContinuationToken.empty())
		return fail(errc::kCorrupt, "the endpoint's listing is truncated but gives no continuation token");
	return page;
}

ErrorBody parseErrorBody(std::span<const uint8_t> xml)
{
	ErrorBody out;
	Doc doc = parse(xml);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
	if (!root || !named(root, "Error"))
		return out;
	for (const xmlNode *c = root->children; c; c = c->next) {
		if (named(c, "Code"))
			out.code = textOf(c);
		else if (named(c, "Message"))
			out.message = textOf(c);
	}
	return out;
}

Result<Retention> parseRetention(std::span<const uint8_t> xml)
{
	Doc doc = parse(xml);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
	if (!root || !named(root, "Retention"))
		return fail(errc::kCorrupt, "the endpoint answered a retention with something else than a Retention");
	std::string mode;
	std::optional<std::chrono::system_clock::time_point> until;
	for (const xmlNode *c = root->children; c; c = c->next) {
		if (named(c, "Mode"))
			mode = textOf(c);
		else if (named(c, "RetainUntilDate"))
			until = parseIsoTime(textOf(c));
	}
	if ((mode != "GOVERNANCE" && mode != "COMPLIANCE") || !until)
		return fail(errc::kCorrupt, "the endpoint's Retention lacks a known Mode or a RetainUntilDate");
	return Retention{mode == "COMPLIANCE" ? RetentionMode::Compliance : RetentionMode::Governance, *until};
}

std::string retentionXml(const Retention &retention)
{
	time_t t = std::chrono::system_clock::to_time_t(retention.until);
	struct tm tm = {};
	::gmtime_r(&t, &tm);
	char date[32];
	std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return std::string("<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>") +
	       (retention.mode == RetentionMode::Compliance ? "COMPLIANCE" : "GOVERNANCE") +
	       "</Mode><RetainUntilDate>" + date + "</RetainUntilDate></Retention>";
}

bool objectLockEnabled(std::span<const uint8_t> xml)
{
	Doc doc = parse(xml);
	const xmlNode *root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
	if (!root || !named(root, "ObjectLockConfiguration"))
		return false;
	for (const xmlNode *c = root->children; c; c = c->next)
		if (named(c, "ObjectLockEnabled"))
			return textOf(c) == "Enabled";
	return false;
}

std::optional<std::chrono::system_clock::time_point> parseIsoTime(const std::string &text)
{
	struct tm tm = {};
	int consumed = 0;
	if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
			&tm.tm_min, &tm.tm_sec, &consumed) != 6)
		return std::nullopt;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	std::chrono::nanoseconds fraction{0};
	const char *p = text.c_str() + consumed;
	if (*p == '.') {
		long long scale = 100000000;
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			fraction += std::chrono::nanoseconds((*p - '0') * scale);
	}
	if (std::strcmp(p, "Z") != 0 && std::strcmp(p, "+00:00") != 0)
		return std::nullopt;
	time_t seconds = ::timegm(&tm);
	if (seconds == time_t(-1))
		return std::nullopt;
	return std::chrono::system_clock::from_time_t(seconds) +
	       std::chrono::duration_cast<std::chrono::system_clock::duration>(fraction);
}

} // namespace virtsnap::store::s3
