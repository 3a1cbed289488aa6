#include "snapshot_query.h"

#include <cctype>
#include <map>

#include "core/bytes.h"

namespace virtsnap::catalog {

namespace {

// Filters on one value of the snapshot row, as SQL over alias `s`.
const std::map<std::string, std::string> &columnFilters()
{
	static const std::map<std::string, std::string> filters = {
		{"description", "s.description"},
		{"owner-id", "s.owner_id"},
		{"snapshot-id", "s.snapshot_id"},
		{"start-time", "s.start_time"},
		{"status", "s.state"},
		{"volume-id", "s.volume_id"},
		// As EC2 shows them: "true"/"false", "80%", whole GiB rounded up.
		{"encrypted", "(CASE WHEN s.encrypted THEN 'true' ELSE 'false' END)"},
		{"progress", "(s.progress || '%')"},
		{"volume-size", "CAST((s.volume_size + 1073741823) / 1073741824 AS TEXT)"},
	};
	return filters;
}

// "2026-11-23T02:41:07Z": a time to the second, without the milliseconds
// the catalog's times carry.
bool isWholeSecondTime(const std::string &v)
{
	static const std::string shape = "dddd-dd-ddTdd:dd:ddZ";
	if (v.size() != shape.size())
		return false;
	for (size_t i = 0; i < v.size(); i++) {
		bool ok = shape[i] == 'd' ? std::isdigit(static_cast<unsigned char>(v[i])) != 0 : v[i] == shape[i];
		if (!ok)
			return false;
	}
	return true;
}

// "(expr = ? OR expr GLOB ? ...)" for the values, appending what to bind.
std::string anyOf(const std::string &expr, const std::vector<std::string> &values, bool isStartTime,
		  std::vector<std::string> &params)
{
	std::string sql = "(";
	for (size_t i = 0; i < values.size(); i++) {
		if (i > 0)
			sql += " OR ";
		Pattern p = parsePattern(values[i]);
		if (p.wildcard) {
			sql += expr + " GLOB ?";
			params.push_back(p.glob);
		} else if (isStartTime && isWholeSecondTime(p.literal)) {
			sql += "(" + expr + " = ? OR " + expr + " GLOB ?)";
			params.push_back(p.literal);
			params.push_back(p.literal.substr(0, p.literal.size() - 1) + ".[0-9][0-9][0-9]Z");
		} else {
			// `=` rather than a GLOB without wildcards: it uses the indexes.
			sql += expr + " = ?";
			params.push_back(p.literal);
		}
	}
	return sql + ")";
}

} // namespace

Pattern parsePattern(const std::string &value)
{
	Pattern p;
	auto literal = [&](char c) {
		p.literal += c;
		if (c == '*' || c == '?' || c == '[')
			p.glob += std::string("[") + c + "]";
		else
			p.glob += c;
	};
	for (size_t i = 0; i < value.size(); i++) {
		char c = value[i];
		if (c == '\\' && i + 1 < value.size() &&
		    (value[i + 1] == '*' || value[i + 1] == '?' || value[i + 1] == '\\')) {
			literal(value[++i]);
		} else if (c == '*' || c == '?') {
			p.wildcard = true;
			p.glob += c;
		} else {
			literal(c);
		}
	}
	return p;
}

Result<Clause> filterClause(const std::vector<Filter> &filters)
{
	Clause out;
	std::vector<std::string> parts;
	for (const Filter &f : filters) {
		if (f.values.empty())
			return fail(errc::kInvalidParameterValue, "filter '" + f.name + "' has no values");
		auto column = columnFilters().find(f.name);
		if (column != columnFilters().end()) {
			parts.push_back(anyOf(column->second, f.values, f.name == "start-time", out.params));
		} else if (f.name == "product-code" || f.name == "product-code.type") {
			// Stored as "ID:TYPE" strings (core/product_code.h).
			const char *part = f.name == "product-code" ? "substr(p.value, 1, instr(p.value, ':') - 1)"
								    : "substr(p.value, instr(p.value, ':') + 1)";
			parts.push_back("EXISTS (SELECT 1 FROM json_each(s.product_codes) p WHERE " +
					anyOf(part, f.values, false, out.params) + ")");
		} else if (f.name == "tag-key") {
			parts.push_back("EXISTS (SELECT 1 FROM tags t WHERE t.resource_id = s.snapshot_id AND " +
					anyOf("t.key", f.values, false, out.params) + ")");
		} else if (f.name.starts_with("tag:")) {
			// The key is exact (EC2 takes no wildcards in it); the
			// values may have them.
			std::string key = f.name.substr(4);
			if (key.empty())
				return fail(errc::kInvalidParameterValue, "filter 'tag:' names no tag key");
			out.params.push_back(key);
			parts.push_back("EXISTS (SELECT 1 FROM tags t WHERE t.resource_id = s.snapshot_id AND t.key = ? AND " +
					anyOf("t.value", f.values, false, out.params) + ")");
		} else {
			return fail(errc::kInvalidParameterValue, "unknown filter '" + f.name + "'");
		}
	}
	if (parts.empty()) {
		out.sql = "1";
		return out;
	}
	for (size_t i = 0; i < parts.size(); i++)
		out.sql += (i > 0 ? " AND " : "") + parts[i];
	return out;
}

// A version byte, the start time, a NUL, the snapshot id; as hex, so it
// travels in URLs and JSON untouched.
std::string encodeNextToken(const PageKey &key)
{
	Bytes raw;
	raw.push_back(1);
	raw.insert(raw.end(), key.startTime.begin(), key.startTime.end());
	raw.push_back(0);
	raw.insert(raw.end(), key.snapshotId.begin(), key.snapshotId.end());
	return toHex(raw);
}

std::optional<PageKey> decodeNextToken(const std::string &token)
{
	// Keys are a timestamp and an id: far below this.
	if (token.size() > 1024)
		return std::nullopt;
	auto raw = fromHex(token);
	if (!raw || raw->empty() || (*raw)[0] != 1)
		return std::nullopt;
	std::string text(raw->begin() + 1, raw->end());
	size_t nul = text.find('\0');
	if (nul == std::string::npos || text.find('\0', nul + 1) != std::string::npos || nul + 1 == text.size())
		return std::nullopt;
	return PageKey{text.substr(0, nul), text.substr(nul + 1)};
}

} // namespace virtsnap::catalog
