#include "restore_journal.h"

#include <cerrno>
#include <cstdio>

#include "core/file_util.h"
#include "json/json.h"

namespace virtsnap::engine {

namespace fs = std::filesystem;

namespace {

constexpr const char *kSuffix = ".restore-journal";

Result<std::vector<ImageSwap>> readSwaps(const fs::path &journal)
{
	VS_ASSIGN(Bytes text, readFile(journal));
	auto doc = Json::parse(std::string_view(reinterpret_cast<const char *>(text.data()), text.size()));
	if (!doc || !doc->get("Swaps").isArray())
		return fail(errc::kIo, "the restore journal " + journal.string() + " is not readable JSON");
	std::vector<ImageSwap> swaps;
	Json list = doc->get("Swaps");
	for (size_t i = 0; i < list.size(); i++) {
		auto restored = list.at(i).getString("Restored"), image = list.at(i).getString("Image");
		if (!restored || !image)
			return fail(errc::kIo, "the restore journal " + journal.string() +
								   " names a swap without its two paths");
		swaps.push_back({*restored, *image});
	}
	return swaps;
}

} // namespace

fs::path restoreJournalDir(const fs::path &stateDir)
{
	return stateDir / "restore-journals";
}

Result<fs::path> writeRestoreJournal(const fs::path &dir, const std::string &setId,
				     const std::vector<ImageSwap> &swaps)
{
	Json list = Json::array();
	for (const ImageSwap &s : swaps) {
		Json j = Json::object();
		j.set("Restored", Json::string(s.restored.string()));
		j.set("Image", Json::string(s.image.string()));
		list.append(j);
	}
	Json doc = Json::object();
	doc.set("SnapshotSetId", Json::string(setId));
	doc.set("Swaps", list);
	std::string text = doc.dump(true) + "\n";
	VS_TRY(makeDirs(dir, 0700));
	fs::path journal = dir / (setId + kSuffix);
	VS_TRY(writeFileAtomic(journal, std::span(reinterpret_cast<const uint8_t *>(text.data()), text.size()), 0600));
	return journal;
}

Result<void> finishRestoreJournal(const fs::path &journal)
{
	VS_ASSIGN(std::vector<ImageSwap> swaps, readSwaps(journal));
	for (const ImageSwap &s : swaps) {
		std::error_code ec;
		if (!fs::exists(s.restored, ec))
			continue; // renamed by an earlier attempt
		if (::rename(s.restored.c_str(), s.image.c_str()) != 0)
			return failErrno("put the restored " + s.image.string() + " in place", errno);
		VS_TRY(fsyncDir(s.image.parent_path()));
	}
	if (::unlink(journal.c_str()) != 0 && errno != ENOENT)
		return failErrno("remove the restore journal " + journal.string(), errno);
	return fsyncDir(journal.parent_path());
}

std::vector<std::string> finishRestoreJournals(const fs::path &dir)
{
	std::vector<std::string> lines;
	std::error_code ec;
	for (const fs::directory_entry &e : fs::directory_iterator(dir, ec)) {
		if (!e.path().string().ends_with(kSuffix))
			continue;
		const std::string setId = e.path().stem().string();
		if (auto done = finishRestoreJournal(e.path()); done)
			lines.push_back("finished the interrupted restore-instance of " + setId);
		else
			lines.push_back("could not finish the interrupted restore-instance of " + setId + ": " +
					done.error().toString());
	}
	return lines;
}

} // namespace virtsnap::engine
