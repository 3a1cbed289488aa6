#include "output.h"

#include <algorithm>
#include <cstdio>


namespace virtsnap::cli {

namespace {

std::string cell(const Json &v)
{
	if (v.isNull())
		return "-";
	if (v.isString())
		return v.asString();
	if (v.isArray()) {
		// Tags: "k=v,k=v"
		std::string out;
		for (size_t i = 0; i < v.size(); i++) {
			Json t = v.at(i);
			out += (i ? "," : "") + t.getString("Key").value_or("") + "=" + t.getString("Value").value_or("");
		}
		return out.empty() ? "-" : out;
	}
	return v.dump();
}

} // namespace

void print(OutputFormat format, const Json &doc, const std::string &listKey, const std::vector<std::string> &columns)
{
	if (format == OutputFormat::Json) {
		std::printf("%s\n", doc.dump(true).c_str());
		return;
	}
	if (listKey.empty()) {
		for (const std::string &k : doc.keys())
			std::printf("%-18s %s\n", k.c_str(), cell(doc.get(k)).c_str());
		return;
	}
	Json rows = doc.get(listKey);
	std::vector<size_t> width;
	for (const std::string &c : columns)
		width.push_back(c.size());
	for (size_t r = 0; r < rows.size(); r++)
		for (size_t c = 0; c < columns.size(); c++)
			width[c] = std::max(width[c], cell(rows.at(r).get(columns[c])).size());
	auto line = [&](auto valueOf) {
		std::string out;
		for (size_t c = 0; c < columns.size(); c++) {
			std::string v = valueOf(c);
			out += v + std::string(c + 1 < columns.size() ? width[c] - v.size() + 2 : 0, ' ');
		}
		std::printf("%s\n", out.c_str());
	};
	line([&](size_t c) { return columns[c]; });
	for (size_t r = 0; r < rows.size(); r++)
		line([&](size_t c) { return cell(rows.at(r).get(columns[c])); });
}

} // namespace virtsnap::cli
