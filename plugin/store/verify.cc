#include "verify.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/cancel.h"

namespace virtsnap::store {

namespace {

// Pages verified together: bounds the page contents held at once.
constexpr size_t kPageBatch = 64;
// Chunks of one pack a worker takes at a time: sequential reads, yet one
// big pack still spreads over every worker.
constexpr size_t kChunkBatch = 256;

std::string shortId(const ChunkId &id)
{
	return idHex(id).substr(0, 16);
}

// Decode errors start with "chunk <64 hex digits>"; the problem line names
// the chunk already.
std::string reasonOf(const Error &e, const ChunkId &id)
{
	std::string prefix = "chunk " + idHex(id);
	std::string msg = e.message;
	if (msg.starts_with(prefix)) {
		msg = msg.substr(prefix.size());
		if (msg.starts_with(": "))
			msg = msg.substr(2);
		else if (msg.starts_with(" "))
			msg = msg.substr(1);
	}
	return msg;
}

struct Failure {
	ChunkId id{};
	std::optional<PackId> pack; // none: no pack index names the chunk
	std::string reason;
};

// One worker's codec, buffer and counters; merged after the join.
struct Reader {
	// By key domain: a chunk is checked under the domain its header
	// names, which its keyed id then proves.
	std::map<DomainId, std::unique_ptr<ChunkCodec>> codecs;
	Bytes blob;
	uint64_t bytesRead = 0;
	uint64_t bytesChecked = 0;
	std::vector<Failure> failures;
	// A store that cannot be read at all is not damage: it stops verify.
	std::optional<Error> unreachable;
};

// Reads one chunk from its pack object as it is now (not through the
// Store's map alone) and checks all of it. The error message is the
// reason alone.
Result<Bytes> readAndCheck(const Store &store, Reader &r, const ChunkId &id, const Store::ChunkLocation &loc)
{
	r.blob.resize(loc.length);
	if (auto read = PackReader(store.backend(), loc.pack).read(loc.offset, r.blob); !read) {
		const std::string &code = read.error().code;
		if (code == errc::kStoreUnavailable || code == errc::kAccessDenied) {
			r.unreachable = read.error();
			return std::unexpected(read.error());
		}
		if (code == errc::kObjectNotFound)
			return fail(errc::kCorrupt, "its pack is missing");
		return fail(errc::kCorrupt, "cannot be read at offset " + std::to_string(loc.offset) + ": " +
						    read.error().message);
	}
	r.bytesRead += loc.length;
	auto header = parseBlobHeader(r.blob);
	if (!header)
		return fail(errc::kCorrupt, reasonOf(header.error(), id));
	std::unique_ptr<ChunkCodec> &codec = r.codecs[header->domain];
	if (!codec) {
		auto made = store.newCodec(header->domain);
		if (!made)
			return fail(errc::kCorrupt, "names key domain " + toHex(header->domain) + ": " + made.error().message);
		codec = std::move(*made);
	}
	auto plain = codec->decode(id, r.blob);
	if (!plain)
		return fail(errc::kCorrupt, reasonOf(plain.error(), id));
	ChunkId actual = codec->idOf(*plain);
	if (actual != id)
		return fail(errc::kCorrupt, "does not hash to its id (its content hashes to " + shortId(actual) + ")");
	r.bytesChecked += plain->size();
	return plain;
}

// Runs fn(reader, i) for i in [0, n) on every reader's thread.
template<typename Fn>
void parallel(std::vector<Reader> &readers, size_t n, Fn fn)
{
	std::atomic<size_t> next{0};
	auto work = [&](Reader &r) {
		for (;;) {
			size_t i = next.fetch_add(1);
			if (i >= n || cancelRequested())
				return;
			fn(r, i);
		}
	};
	std::vector<std::thread> threads;
	for (size_t w = 1; w < std::min(readers.size(), n); w++)
		threads.emplace_back(work, std::ref(readers[w]));
	work(readers[0]);
	for (std::thread &t : threads)
		t.join();
}

struct PageState {
	bool ok = false;
	uint32_t rawLength = 0;
	ChunkId lastId{};
	std::optional<PackId> pack;
	std::string reason;
};

// A data chunk some page names. `required` is the raw length the slots
// seen so far need; `conflict`: two slots need different lengths.
struct ChunkState {
	uint32_t required = 0;
	uint32_t rawLength = 0;
	bool bad = false;
	bool conflict = false;
};

struct Snapshot {
	size_t report = 0; // its entry in VerifyReport::snapshots
	Manifest m;
	uint64_t slots = 0;
	std::set<ChunkId> damaged;        // distinct damaged chunks it needs
	std::vector<std::string> problems;

	uint32_t slotLength(uint64_t slot) const
	{
		return uint32_t(std::min<uint64_t>(m.chunkSize, m.volumeSize - slot * m.chunkSize));
	}
	uint64_t pageSlots(size_t page) const
	{
		return std::min<uint64_t>(m.pageEntries, slots - uint64_t(page) * m.pageEntries);
	}
	// The length the last entry of page `page` needs: only the volume's
	// last slot may be short.
	uint32_t lastEntryLength(size_t page) const
	{
		return slotLength(uint64_t(page) * m.pageEntries + pageSlots(page) - 1);
	}
};

std::string where(const std::optional<PackId> &pack)
{
	return pack ? "pack " + toHex(*pack) : std::string("no pack");
}

std::unexpected<Error> interrupted()
{
	return fail(errc::kIncorrectState, "verify interrupted by signal " + std::to_string(cancelSignal()));
}

class Verifier
{
public:
	Verifier(Store &store, unsigned threads) : store_(store)
	{
		unsigned n = threads ? threads : std::min(16u, std::max(1u, std::thread::hardware_concurrency()));
		readers_.resize(n);
	}

	Result<VerifyReport> run(const std::vector<std::string> &requested)
	{
		if (auto r = store_.refresh(); !r)
			report_.storeProblems.push_back(r.error().toString());
		VS_ASSIGN(auto ids, snapshotIds(requested));
		for (const std::string &id : ids) {
			if (cancelRequested())
				return interrupted();
			report_.snapshots.push_back(SnapshotVerification{id, true, 0, {}});
			openSnapshot(report_.snapshots.size() - 1);
		}
		for (Snapshot &s : snapshots_) {
			VS_TRY(checkPages(s));
		}
		VS_TRY(checkChunks());
		if (suspects_) {
			for (Snapshot &s : snapshots_)
				VS_TRY(attribute(s));
		}
		for (Snapshot &s : snapshots_)
			finish(s);
		for (Reader &r : readers_) {
			report_.bytesRead += r.bytesRead;
			report_.bytesChecked += r.bytesChecked;
		}
		for (const SnapshotVerification &v : report_.snapshots)
			report_.snapshotsDamaged += !v.ok;
		return std::move(report_);
	}

private:
	// A read that failed because the store could not be reached stops
	// verify with that error; the report would otherwise call it damage.
	Result<void> reachable() const
	{
		for (const Reader &r : readers_)
			if (r.unreachable)
				return std::unexpected(*r.unreachable);
		return {};
	}

	Result<std::vector<std::string>> snapshotIds(const std::vector<std::string> &requested)
	{
		std::vector<std::string> ids;
		if (!requested.empty()) {
			std::unordered_set<std::string> seen;
			for (const std::string &id : requested)
				if (seen.insert(id).second)
					ids.push_back(id);
			return ids;
		}
		return store_.listManifestIds();
	}

	void openSnapshot(size_t index)
	{
		SnapshotVerification &v = report_.snapshots[index];
		auto m = store_.getManifest(v.snapshotId);
		if (!m) {
			v.ok = false;
			v.problems.push_back(m.error().toString());
			return;
		}
		Snapshot s;
		s.report = index;
		s.m = std::move(*m);
		// A manifest that does not describe its grid leaves nothing to
		// check against.
		if (s.m.chunkSize != store_.chunkSize()) {
			v.ok = false;
			v.problems.push_back("manifest: chunk size " + std::to_string(s.m.chunkSize) +
					     " is not the store's " + std::to_string(store_.chunkSize()));
			return;
		}
		s.slots = (s.m.volumeSize + s.m.chunkSize - 1) / s.m.chunkSize;
		uint64_t pages = s.m.pageEntries ? (s.slots + s.m.pageEntries - 1) / s.m.pageEntries : 0;
		if ((s.slots && !s.m.pageEntries) || s.m.indexPages.size() != pages) {
			v.ok = false;
			v.problems.push_back("manifest: " + std::to_string(s.m.indexPages.size()) + " index pages of " +
					     std::to_string(s.m.pageEntries) + " ids do not cover " +
					     std::to_string(s.slots) + " slots");
			return;
		}
		snapshots_.push_back(std::move(s));
	}

	void require(const ChunkId &id, uint32_t length)
	{
		if (isZeroId(id))
			return;
		auto [it, fresh] = chunks_.try_emplace(id);
		if (fresh)
			it->second.required = length;
		else if (it->second.required != length)
			it->second.conflict = true;
	}

	// Reads the pages of `s` not read yet, and names every chunk they list.
	Result<void> checkPages(Snapshot &s)
	{
		std::vector<ChunkId> unread;
		std::unordered_set<ChunkId, ChunkIdHash> listed;
		for (const ChunkId &id : s.m.indexPages)
			if (!isZeroId(id) && !pages_.count(id) && listed.insert(id).second)
				unread.push_back(id);
		for (size_t first = 0; first < unread.size(); first += kPageBatch) {
			size_t n = std::min(kPageBatch, unread.size() - first);
			std::vector<PageState> states(n);
			std::vector<Bytes> contents(n);
			parallel(readers_, n, [&](Reader &r, size_t i) {
				const ChunkId &id = unread[first + i];
				auto loc = store_.locate(id);
				if (!loc) {
					states[i].reason = "missing (no pack index names it)";
					return;
				}
				states[i].pack = loc->pack;
				auto plain = readAndCheck(store_, r, id, *loc);
				if (!plain) {
					states[i].reason = plain.error().message;
					return;
				}
				if (plain->size() % sizeof(ChunkId) != 0 || plain->empty()) {
					states[i].reason = "holds " + std::to_string(plain->size()) +
							   " bytes, not a whole number of ids";
					return;
				}
				states[i].ok = true;
				states[i].rawLength = uint32_t(plain->size());
				contents[i] = std::move(*plain);
			});
			if (cancelRequested())
				return interrupted();
			VS_TRY(reachable());
			for (size_t i = 0; i < n; i++) {
				report_.chunksChecked++;
				report_.chunksDamaged += !states[i].ok;
				if (states[i].ok) {
					// Every entry but a page's last is never a volume's
					// last slot, whichever snapshot uses the page.
					size_t entries = contents[i].size() / sizeof(ChunkId);
					for (size_t e = 0; e < entries; e++) {
						ChunkId id;
						std::memcpy(id.data(), contents[i].data() + e * sizeof(ChunkId), sizeof(ChunkId));
						if (e + 1 == entries)
							states[i].lastId = id;
						else
							require(id, s.m.chunkSize);
					}
				}
				pages_.emplace(unread[first + i], std::move(states[i]));
			}
		}
		for (size_t p = 0; p < s.m.indexPages.size(); p++) {
			const ChunkId &id = s.m.indexPages[p];
			if (isZeroId(id))
				continue;
			const PageState &page = pages_.at(id);
			if (!page.ok) {
				s.damaged.insert(id);
				s.problems.push_back("index page " + std::to_string(p) + " (chunk " + shortId(id) + ", " +
						     where(page.pack) + "): " + page.reason);
			} else if (page.rawLength != s.pageSlots(p) * sizeof(ChunkId)) {
				s.damaged.insert(id);
				s.problems.push_back("index page " + std::to_string(p) + " (chunk " + shortId(id) + ", " +
						     where(page.pack) + ") lists " +
						     std::to_string(page.rawLength / sizeof(ChunkId)) + " ids; " +
						     std::to_string(s.pageSlots(p)) + " slots need one each");
			} else {
				require(page.lastId, s.lastEntryLength(p));
			}
		}
		return {};
	}

	// Every distinct chunk, once, grouped by pack and read in pack order.
	Result<void> checkChunks()
	{
		struct Work {
			PackId pack;
			uint64_t offset;
			uint32_t length;
			const ChunkId *id;
			ChunkState *state;
		};
		std::vector<Work> work;
		work.reserve(chunks_.size());
		std::vector<Failure> missing;
		for (auto &[id, state] : chunks_) {
			if (auto loc = store_.locate(id)) {
				work.push_back(Work{loc->pack, loc->offset, loc->length, &id, &state});
			} else {
				state.bad = true;
				missing.push_back(Failure{id, std::nullopt, "missing (no pack index names it)"});
			}
		}
		std::sort(work.begin(), work.end(), [](const Work &a, const Work &b) {
			return std::tie(a.pack, a.offset) < std::tie(b.pack, b.offset);
		});
		std::vector<std::pair<size_t, size_t>> batches;
		for (size_t i = 0; i < work.size();) {
			size_t end = i + 1;
			while (end < work.size() && end - i < kChunkBatch && work[end].pack == work[i].pack)
				end++;
			batches.emplace_back(i, end);
			i = end;
		}
		parallel(readers_, batches.size(), [&](Reader &r, size_t b) {
			for (size_t i = batches[b].first; i < batches[b].second; i++) {
				Work &w = work[i];
				auto plain = readAndCheck(store_, r, *w.id, {w.pack, w.offset, w.length});
				if (plain) {
					w.state->rawLength = uint32_t(plain->size());
				} else {
					w.state->bad = true;
					r.failures.push_back(Failure{*w.id, w.pack, plain.error().message});
				}
			}
		});
		if (cancelRequested())
			return interrupted();
		VS_TRY(reachable());

		report_.chunksChecked += chunks_.size();
		for (Failure &f : missing)
			failures_.emplace(f.id, std::move(f));
		for (Reader &r : readers_) {
			for (Failure &f : r.failures)
				failures_.emplace(f.id, std::move(f));
			r.failures.clear();
		}
		report_.chunksDamaged += failures_.size();
		for (const auto &[id, state] : chunks_)
			if (state.bad || state.conflict || state.rawLength != state.required) {
				suspects_ = true;
				break;
			}
		return {};
	}

	// Only when some chunk is damaged or of a wrong length: reads the
	// pages of `s` again to find which of its slots need which of them.
	Result<void> attribute(Snapshot &s)
	{
		struct Use {
			uint64_t first = 0;
			uint64_t count = 0;
			uint32_t rawLength = 0;
			uint32_t needed = 0;
		};
		std::map<ChunkId, Use> bad, wrongLength;
		Reader &r = readers_[0];
		for (size_t p = 0; p < s.m.indexPages.size(); p++) {
			if (cancelRequested())
				return interrupted();
			const ChunkId &pageId = s.m.indexPages[p];
			if (isZeroId(pageId))
				continue;
			const PageState &page = pages_.at(pageId);
			if (!page.ok || page.rawLength != s.pageSlots(p) * sizeof(ChunkId))
				continue; // reported already
			auto loc = store_.locate(pageId);
			auto plain = loc ? readAndCheck(store_, r, pageId, *loc)
					 : Result<Bytes>(fail(errc::kCorrupt, "missing (no pack index names it)"));
			if (!plain) {
				s.damaged.insert(pageId);
				s.problems.push_back("index page " + std::to_string(p) + " (chunk " + shortId(pageId) +
						     "): " + plain.error().message);
				continue;
			}
			uint64_t base = uint64_t(p) * s.m.pageEntries;
			for (uint64_t e = 0; e < s.pageSlots(p); e++) {
				ChunkId id;
				std::memcpy(id.data(), plain->data() + e * sizeof(ChunkId), sizeof(ChunkId));
				if (isZeroId(id))
					continue;
				const ChunkState &state = chunks_.at(id);
				uint64_t slot = base + e;
				if (state.bad) {
					Use &u = bad.try_emplace(id, Use{slot, 0, 0, 0}).first->second;
					u.count++;
				} else if (state.rawLength != s.slotLength(slot)) {
					Use &u = wrongLength.try_emplace(id, Use{slot, 0, state.rawLength, s.slotLength(slot)})
							 .first->second;
					u.count++;
				}
			}
		}
		auto slots = [](const Use &u) {
			return "slot " + std::to_string(u.first) +
			       (u.count > 1 ? " and " + std::to_string(u.count - 1) + " more" : std::string());
		};
		std::vector<std::pair<uint64_t, std::string>> found;
		for (const auto &[id, u] : bad) {
			const Failure &f = failures_.at(id);
			s.damaged.insert(id);
			found.emplace_back(u.first, "chunk " + shortId(id) + " (" + where(f.pack) + ", " + slots(u) +
							    "): " + f.reason);
		}
		for (const auto &[id, u] : wrongLength) {
			s.damaged.insert(id);
			found.emplace_back(u.first, "chunk " + shortId(id) + " (" + slots(u) + ") has " +
							    std::to_string(u.rawLength) + " bytes; the slot needs " +
							    std::to_string(u.needed));
		}
		std::sort(found.begin(), found.end());
		for (auto &[slot, line] : found)
			s.problems.push_back(std::move(line));
		return {};
	}

	void finish(Snapshot &s)
	{
		SnapshotVerification &v = report_.snapshots[s.report];
		v.damagedChunks = s.damaged.size();
		if (s.problems.size() > kMaxProblems) {
			size_t more = s.problems.size() - kMaxProblems;
			s.problems.resize(kMaxProblems);
			s.problems.push_back("... and " + std::to_string(more) + " more problems");
		}
		for (std::string &p : s.problems)
			v.problems.push_back(std::move(p));
		v.ok = v.problems.empty();
	}

	Store &store_;
	std::vector<Reader> readers_;
	VerifyReport report_;
	std::vector<Snapshot> snapshots_;
	std::unordered_map<ChunkId, PageState, ChunkIdHash> pages_;
	std::unordered_map<ChunkId, ChunkState, ChunkIdHash> chunks_;
	std::unordered_map<ChunkId, Failure, ChunkIdHash> failures_;
	bool suspects_ = false;
};

} // namespace

Result<VerifyReport> verifySnapshots(Store &store, const std::vector<std::string> &snapshotIds, unsigned threads)
{
	// gc must not remove a pack under verify's reads: damage it would
	// report that is not there.
	VS_ASSIGN(auto lease, store.lease(Lease::Kind::Shared, "verify"));
	Verifier v(store, threads);
	return v.run(snapshotIds);
}

} // namespace virtsnap::store
