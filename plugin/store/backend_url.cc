#include "backend_url.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace virtsnap::store {

namespace {

std::unexpected<Error> bad(const std::string &url, const std::string &why)
{
	return fail(errc::kInvalidParameterValue, "store URL '" + url + "': " + why);
}

// %XX escapes, as URLs have them.
Result<std::string> decode(const std::string &url, const std::string &s)
{
	std::string out;
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] != '%') {
			out += s[i];
			continue;
		}
		if (i + 2 >= s.size() || !std::isxdigit((unsigned char)s[i + 1]) || !std::isxdigit((unsigned char)s[i + 2]))
			return bad(url, "'" + s + "' has a broken %-escape");
		out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
		i += 2;
	}
	return out;
}

Result<std::map<std::string, std::string>> parseQuery(const std::string &url, const std::string &query,
						      std::initializer_list<const char *> known)
{
	std::map<std::string, std::string> out;
	for (size_t start = 0; start < query.size();) {
		size_t amp = query.find('&', start);
		std::string item = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
		start = amp == std::string::npos ? query.size() : amp + 1;
		size_t eq = item.find('=');
		if (eq == std::string::npos || eq == 0)
			return bad(url, "'" + item + "' is not NAME=VALUE");
		std::string key = item.substr(0, eq);
		if (std::none_of(known.begin(), known.end(), [&](const char *k) { return key == k; }))
			return bad(url, "unknown parameter '" + key + "'");
		if (out.count(key))
			return bad(url, "'" + key + "' is given twice");
		VS_ASSIGN(out[key], decode(url, item.substr(eq + 1)));
	}
	return out;
}

// "BUCKET/PREFIX?QUERY" after the scheme: the first path segment, the
// rest without surrounding slashes, and the query.
void split(const std::string &rest, std::string *first, std::string *tail, std::string *query)
{
	size_t q = rest.find('?');
	std::string path = rest.substr(0, q);
	*query = q == std::string::npos ? "" : rest.substr(q + 1);
	size_t slash = path.find('/');
	*first = path.substr(0, slash);
	*tail = slash == std::string::npos ? "" : path.substr(slash + 1);
	while (!tail->empty() && tail->back() == '/')
		tail->pop_back();
}

bool plainName(const std::string &s)
{
	return !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
				     std::string::npos;
}

Result<StoreUrl> parseRados(StoreUrl u, const std::string &rest)
{
	u.scheme = StoreUrl::Scheme::Rados;
	std::string query;
	split(rest, &u.pool, &u.radosNamespace, &query);
	if (!plainName(u.pool))
		return bad(u.text, "the pool name '" + u.pool + "' is empty or has characters a pool cannot have");
	if (!u.radosNamespace.empty() && !plainName(u.radosNamespace))
		return bad(u.text, "the namespace '" + u.radosNamespace + "' has characters it cannot have");
	VS_ASSIGN(auto params, parseQuery(u.text, query, {"conf", "id"}));
	if (params.count("conf"))
		u.conf = params["conf"];
	if (params.count("id"))
		u.id = params["id"];
	return u;
}

Result<StoreUrl> parseS3(StoreUrl u, const std::string &rest)
{
	u.scheme = StoreUrl::Scheme::S3;
	std::string query;
	split(rest, &u.bucket, &u.prefix, &query);
	// S3's rules for bucket names: 3 to 63 lowercase letters, digits,
	// dots and hyphens.
	if (u.bucket.size() < 3 || u.bucket.size() > 63 ||
	    u.bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos)
		return bad(u.text, "the bucket name '" + u.bucket + "' is not 3 to 63 lowercase letters, digits, dots or hyphens");
	VS_ASSIGN(auto params, parseQuery(u.text, query, {"endpoint", "region", "style"}));
	if (!params.count("endpoint"))
		return bad(u.text, "endpoint=URL is required (https://s3.REGION.amazonaws.com, or your RGW or MinIO)");
	u.endpoint = params["endpoint"];
	if (u.endpoint.rfind("http://", 0) != 0 && u.endpoint.rfind("https://", 0) != 0)
		return bad(u.text, "the endpoint '" + u.endpoint + "' is not an http:// or https:// URL");
	while (!u.endpoint.empty() && u.endpoint.back() == '/')
		u.endpoint.pop_back();
	if (params.count("region"))
		u.region = params["region"];
	std::string style = params.count("style") ? params["style"] : "path";
	if (style != "path" && style != "virtual")
		return bad(u.text, "style must be path or virtual");
	u.virtualHosted = style == "virtual";
	return u;
}

} // namespace

Result<StoreUrl> parseStoreUrl(const std::string &url)
{
	StoreUrl u;
	u.text = url;
	if (url.empty())
		return bad(url, "it is empty");
	size_t scheme = url.find("://");
	if (scheme == std::string::npos) {
		u.path = url;
		return u;
	}
	std::string name = url.substr(0, scheme), rest = url.substr(scheme + 3);
	if (name == "file") {
		if (rest.empty() || rest.front() != '/')
			return bad(url, "a file URL names an absolute path: file:///var/lib/virtsnap");
		VS_ASSIGN(u.path, decode(url, rest));
		return u;
	}
	if (name == "rados")
		return parseRados(u, rest);
	if (name == "s3")
		return parseS3(u, rest);
	return bad(url, "unknown scheme '" + name + "' (a path, file://, rados:// or s3://)");
}

} // namespace virtsnap::store
