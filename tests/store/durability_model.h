// What a power loss would leave of a directory tree, learnt from the fsyncs
// this process makes in it, by the letter of POSIX: a file's bytes are
// durable once the file was fsynced (or fdatasynced), a name (created,
// renamed, linked, unlinked) once its directory was. ext4 and xfs often
// keep more than that; a store that is right under this model is right on
// them, and a store that relied on what they happen to keep is caught.
//
// The durable state only changes at a sync, so a power loss after each of
// the K syncs an operation makes (and before the first) covers every state
// a crash can leave: materialize(k) builds the one after the first k.
//
// It works by defining fsync() and fdatasync() in the test binary, which
// the store's calls reach first: each records what the call makes durable
// (a file's bytes, a directory's entries), and syncs nothing for real, in
// this binary, ever. Nothing is recorded outside start() and stop(), nor
// outside the root.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::store::test {

class DurabilityModel
{
public:
	// Everything under `root` now counts as durable; syncs are recorded
	// from here on.
	static void start(const std::filesystem::path &root);
	static void stop();
	// Syncs recorded since start() (of files and directories under root).
	static size_t syncs();
	// "fsync dir packs/ab", "fdatasync packs/ab/<id>.pack.tmp-..." per sync.
	static std::vector<std::string> log();
	// The process dies at a sync, the machine does not: `k` more syncs
	// succeed, every later one fails with EIO and records nothing, while
	// what the process does meanwhile stays, as in the page cache, for the
	// next process to find. syncAgain() is that next process.
	static void failSyncsAfter(size_t k);
	static void syncAgain();
	// Builds at `out` (which must not exist) the tree a power loss after
	// the first `k` syncs would leave. A file whose bytes were never
	// synced comes back empty; a directory whose entries never were, empty.
	static Result<void> materialize(size_t k, const std::filesystem::path &out);
};

} // namespace virtsnap::store::test
