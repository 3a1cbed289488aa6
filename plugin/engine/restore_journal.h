// The commit point of restore-instance. Every disk of the set is written
// and made durable under a temporary name beside its image first; then one
// journal naming every rename is written durably, and from that moment the
// restore has happened: the renames are finished by whoever finds the
// journal (the same run, or virtsnapd when it next starts), never undone.
// A failure before the journal leaves every original image untouched; a
// crash after it leaves the set in place once the renames are finished,
// which virtsnapd does before it serves anyone (Service::openStore).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"

namespace virtsnap::engine {

struct ImageSwap {
	std::filesystem::path restored; // the set's image, complete and durable
	std::filesystem::path image;    // the instance's image it replaces
};

// Where a host's restore journals live, under its state directory.
std::filesystem::path restoreJournalDir(const std::filesystem::path &stateDir);

// Writes the journal of `swaps` durably into `dir`; returns its path.
Result<std::filesystem::path> writeRestoreJournal(const std::filesystem::path &dir, const std::string &setId,
						  const std::vector<ImageSwap> &swaps);

// Renames what is left of the journal's swaps into place, then removes the
// journal. Safe to repeat: a swap already done is skipped. On failure the
// journal stays, for the next attempt.
Result<void> finishRestoreJournal(const std::filesystem::path &journal);

// Finishes every journal in `dir` (after a crash); one line per journal
// finished or failed, for the log.
std::vector<std::string> finishRestoreJournals(const std::filesystem::path &dir);

} // namespace virtsnap::engine
