// Snapshot index pages: a manifest (the input up to its first newline; only
// one parseManifest accepts goes on) and its pages' plaintext (the rest, cut
// at each "PAGE"), assembled as SnapshotIndex::load does.
#include "store/snapshot_index.h"
#include "fuzz_util.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	std::string_view input = fuzz::textOf(data, size);
	size_t newline = input.find('\n');
	if (newline == std::string_view::npos)
		return 0;
	auto m = store::parseManifest(input.substr(0, newline));
	if (!m)
		return 0;
	std::string_view pages = input.substr(newline + 1);
	auto readPage = [&](const store::ChunkId &) -> Result<Bytes> {
		size_t end = pages.find("PAGE");
		std::string_view page = pages.substr(0, end);
		pages.remove_prefix(end == std::string_view::npos ? pages.size() : end + 4);
		return Bytes(page.begin(), page.end());
	};
	auto index = store::SnapshotIndex::fromPages(*m, readPage);
	if (!index)
		return 0;
	fuzz::check(index->volumeSize() == m->volumeSize && index->chunkSize() == m->chunkSize,
		    "the index has the manifest's geometry");
	// A run of zero pages (manifest version 2) lets a few bytes claim 2^30
	// slots; walking each would make an input seconds long, not find more.
	if (index->slots() > (uint64_t(1) << 22))
		return 0;
	uint64_t covered = 0;
	for (uint64_t slot = 0; slot < index->slots(); slot++) {
		(void)index->at(slot);
		covered += index->slotLength(slot);
	}
	fuzz::check(covered == m->volumeSize, "the slots cover the volume exactly");
	return 0;
}
