#include "tests/support/qemu_residue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>

namespace virtsnap::test {

namespace {

namespace fs = std::filesystem;
using virtsnap::Json;

// query-COMMAND's array, or nothing with `refused` set to what stands in the
// residue instead.
std::optional<Json> queryList(qmp::QmpClient &qmp, const std::string &command, std::string *refused)
{
	auto reply = qmp.execute(command);
	if (!reply) {
		*refused = "<" + command + ": " + reply.error().toString() + ">";
		return std::nullopt;
	}
	return *reply;
}

// `member` of each element of query-COMMAND's reply, sorted.
std::vector<std::string> listed(qmp::QmpClient &qmp, const std::string &command, const std::string &member)
{
	std::string refused;
	auto list = queryList(qmp, command, &refused);
	if (!list)
		return {refused};
	std::vector<std::string> out;
	for (size_t i = 0; i < list->size(); i++)
		out.push_back(list->at(i).getString(member).value_or(""));
	std::sort(out.begin(), out.end());
	return out;
}

// The names of the bitmaps of every node of a query-named-block-nodes
// reply, "" for anonymous ones.
std::vector<std::string> bitmapNames(const Json &nodes)
{
	std::vector<std::string> names;
	for (size_t i = 0; i < nodes.size(); i++) {
		Json list = nodes.at(i).get("dirty-bitmaps");
		for (size_t k = 0; k < list.size(); k++)
			names.push_back(list.at(k).getString("name").value_or(""));
	}
	return names;
}

void appendJoined(std::string &out, const char *label, const std::vector<std::string> &items)
{
	out += label;
	out += ":";
	for (const std::string &item : items)
		out += " " + (item.empty() ? std::string("\"\"") : item);
	out += ";";
}

} // namespace

std::string toString(const QemuResidue &residue)
{
	std::string out;
	appendJoined(out, "nodes", residue.nodes);
	appendJoined(out, " jobs", residue.jobs);
	appendJoined(out, " exports", residue.exports);
	appendJoined(out, " bitmaps", residue.bitmaps);
	appendJoined(out, " files", residue.files);
	return out;
}

void PrintTo(const QemuResidue &residue, std::ostream *os)
{
	*os << toString(residue);
}

QemuResidue qemuResidue(qmp::QmpClient &qmp, const std::string &scratchRoot)
{
	QemuResidue r;
	r.jobs = listed(qmp, "query-block-jobs", "device");
	r.exports = listed(qmp, "query-block-exports", "id");
	// Bitmaps on any node, not only on the disks' own: a scratch node's
	// export bitmap counts too.
	std::string refused;
	if (auto nodes = queryList(qmp, "query-named-block-nodes", &refused)) {
		for (size_t i = 0; i < nodes->size(); i++)
			r.nodes.push_back(nodes->at(i).getString("node-name").value_or(""));
		r.bitmaps = bitmapNames(*nodes);
	} else {
		r.nodes = {refused};
		r.bitmaps = {refused};
	}
	std::sort(r.nodes.begin(), r.nodes.end());
	std::sort(r.bitmaps.begin(), r.bitmaps.end());

	if (!scratchRoot.empty()) {
		// Directories are left out: the work directory of a driver that
		// is still connected is no leftover; what a capture puts in it is.
		std::error_code ec;
		for (auto it = fs::recursive_directory_iterator(scratchRoot, ec); !ec && it != fs::end(it);
		     it.increment(ec))
			if (!it->is_directory())
				r.files.push_back(fs::relative(it->path(), scratchRoot).string());
		std::sort(r.files.begin(), r.files.end());
	}
	return r;
}

std::set<std::string> dirtyBitmaps(qmp::QmpClient &qmp, AnonymousBitmaps anonymous)
{
	std::set<std::string> names;
	auto nodes = qmp.execute("query-named-block-nodes");
	EXPECT_TRUE(nodes) << "query-named-block-nodes: " << nodes.error().toString();
	if (nodes)
		for (const std::string &name : bitmapNames(*nodes))
			if (!name.empty() || anonymous == AnonymousBitmaps::Counted)
				names.insert(name);
	return names;
}

} // namespace virtsnap::test
