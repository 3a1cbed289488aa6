// What a capture may leave behind in a QEMU and beside it, to compare before
// and after: a test takes qemuResidue() while QEMU is clean and expects the
// same afterwards, so a leftover NBD export, block job, scratch node,
// scratch file or dirty bitmap shows by name in the failure.
//
//   QemuResidue clean = qemuResidue(vm->control(), workRoot);
//   ... a capture that fails or is interrupted ...
//   EXPECT_EQ(qemuResidue(vm->control(), workRoot), clean);
//
// A capture that completes leaves its new bitmap on purpose: expect it by
// setting `bitmaps` of the clean value.
#pragma once

#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "qmp/qmp_client.h"

namespace virtsnap::test {

struct QemuResidue {
	// Every list is sorted; a query QEMU refused is one "<query-...: error>" entry.
	std::vector<std::string> nodes;   // named block nodes (a capture's scratch nodes are "vs...")
	std::vector<std::string> jobs;    // block job ids
	std::vector<std::string> exports; // block export ids (a capture's NBD exports)
	std::vector<std::string> bitmaps; // dirty bitmaps of every node by name; "" for a block job's own
	std::vector<std::string> files;   // non-directories under the scratch root, relative to it

	bool operator==(const QemuResidue &) const = default;
};

// One line, for failure messages (gtest uses PrintTo).
std::string toString(const QemuResidue &residue);
void PrintTo(const QemuResidue &residue, std::ostream *os);

// The residue of the QEMU behind `qmp` and, unless `scratchRoot` is empty,
// of the directory where captures make their work directories ($TMPDIR).
QemuResidue qemuResidue(qmp::QmpClient &qmp, const std::string &scratchRoot = "");

// Whether dirtyBitmaps() counts the anonymous bitmaps block jobs make for
// themselves (as ""): a test that runs a job of its own leaves them out.
enum class AnonymousBitmaps { Counted, Ignored };

// The names of the dirty bitmaps on any block node; a failure of the current
// test when QEMU does not answer. Not query-block's: while a block job runs
// on a disk, that shows the filter the job put in front of the disk's
// format node, and none of the disk's bitmaps.
std::set<std::string> dirtyBitmaps(qmp::QmpClient &qmp, AnonymousBitmaps anonymous = AnonymousBitmaps::Counted);

} // namespace virtsnap::test
