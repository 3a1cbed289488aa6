// The chunk store on a local directory (FORMAT.md). The contract every
// backend keeps:
//  - a chunk, once put and committed, reads back bit for bit or fails loudly;
//  - nothing becomes visible before it is durable, and a manifest only
//    after every chunk it names;
//  - readers never see a half-written object, whatever crashes.
// One Store may be shared by threads: lookups and reads are concurrent.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "chunk_codec.h"
#include "core/unique_fd.h"
#include "key_domain.h"
#include "manifest.h"
#include "pack.h"

namespace virtsnap::store {

namespace fs = std::filesystem;

class ChunkWriter;

class Store
{
public:
	// 64 KiB: QEMU's default bitmap granularity and qcow2 cluster size,
	// and the best trade-off measured under the current design, which holds
	// every chunk id in memory (tests/bench/CHUNK_SIZE.md): smaller chunks
	// grow less on scattered 4 KiB writes but cost 4x the objects and RAM.
	static constexpr uint32_t kDefaultChunkSize = 64 * 1024;

	// Creates the store; creates the key file too if it is absent (then
	// *keyCreated is set). Refuses a directory that already holds a store.
	static Result<void> init(const fs::path &dir, const fs::path &keyFile, uint32_t chunkSize,
				 bool *keyCreated);
	// StoreNotInitialized, KeyFileError or WrongKey before touching anything.
	static Result<std::unique_ptr<Store>> open(const fs::path &dir, const fs::path &keyFile);
	~Store();

	const fs::path &dir() const { return dir_; }
	const std::string &storeId() const { return storeId_; }
	uint32_t chunkSize() const { return chunkSize_; }
	const KeyDomain &domain() const { return domain_; }

	std::unique_ptr<ChunkCodec> newCodec() const { return std::make_unique<ChunkCodec>(domain_); }
	std::unique_ptr<ChunkWriter> newWriter();

	bool contains(const ChunkId &id) const;
	// Reads, authenticates and decompresses one stored chunk (not the zero id).
	Result<Bytes> readChunk(ChunkCodec &codec, const ChunkId &id);
	// Learns packs written by other processes since open.
	Result<void> refresh();

	Result<void> putManifest(const Manifest &m, bool overwrite = false);
	Result<Manifest> getManifest(const std::string &snapshotId) const;
	Result<std::vector<Manifest>> listManifests() const;
	Result<void> deleteManifest(const std::string &snapshotId);

	// Small mutable records (volume tags, instance attributes), sealed
	// JSON under records/<kind>/<id>. An absent record reads as nullopt.
	Result<void> putRecord(const std::string &kind, const std::string &id, const std::string &json);
	Result<std::optional<std::string>> getRecord(const std::string &kind, const std::string &id) const;
	Result<std::vector<std::string>> listRecordIds(const std::string &kind) const;

	struct ChunkLocation {
		PackId pack;
		uint64_t offset;
		uint32_t length;
	};
	std::optional<ChunkLocation> locate(const ChunkId &id) const;

	// For readers that batch many chunks into few reads (restore): where a
	// chunk's blob is, with its pack as a number that stays valid as long
	// as this Store (gc never reuses one), and a read of raw pack bytes,
	// which may span several blobs (and which the page cache does not
	// keep: such readers read each blob once). The blobs still go through
	// ChunkCodec::decode, which checks each one.
	struct BlobRef {
		uint32_t pack;
		uint32_t length;
		uint64_t offset;
	};
	std::optional<BlobRef> findBlob(const ChunkId &id) const;
	Result<void> readPackBytes(uint32_t pack, uint64_t offset, std::span<uint8_t> out);

	// For gc (gc.h). Trades this instance's shared lock for an exclusive
	// one without waiting (flock converts the lock of our own open file
	// description, so our shared lock is no obstacle); IncorrectState
	// while any other Store, in this process or another, has the store
	// open. unlockExclusive() trades it back.
	Result<void> lockExclusive();
	void unlockExclusive();
	// After gc deleted packs: drops their chunks from the map and closes
	// their files, so no lookup or dedup ever points at them again.
	void forgetPacks(const std::vector<PackId> &packs);

private:
	friend class ChunkWriter;
	struct Location {
		uint32_t pack;
		uint32_t length;
		uint64_t offset;
	};

	Store() = default;
	void addPackLocked(const PackIndex &index);
	Result<int> packFd(uint32_t pack);
	fs::path manifestPath(const std::string &snapshotId) const;
	fs::path recordPath(const std::string &kind, const std::string &id) const;

	fs::path dir_;
	std::string storeId_;
	uint32_t chunkSize_ = kDefaultChunkSize;
	KeyDomain domain_;
	UniqueFd lock_;

	mutable std::shared_mutex mutex_;
	std::unordered_map<ChunkId, Location, ChunkIdHash> chunks_;
	std::vector<PackId> packs_;
	std::vector<UniqueFd> packFds_;
	std::unordered_set<std::string> packNames_;
};

// Writes the new chunks of one job into packs. put() may be called from
// several threads, each with its own codec. A pack becomes visible when it
// is full (about 32 MiB) and durable, or at commit(); dropped uncommitted,
// the writer removes its unfinished pack, and finished ones wait for gc
// like any chunk no manifest names.
//
// put() only hashes, compresses and encrypts, on the caller's thread; the
// blobs go through a short queue (at most kQueueBytes) to one appender
// thread that writes the pack sequentially, a batch at a time, and a full pack goes to a
// finisher thread that makes it durable (fsync, index, renames) while the
// appender fills the next. Callers never wait for the disk unless it is
// slower than they are: then a full queue, or a pack still being finished
// when the next one fills, slows put() down instead of piling up.
// Errors of those threads come back from a later put() or from commit().
class ChunkWriter
{
public:
	static constexpr size_t kQueueBytes = 8u << 20;
	// The appender is woken when this much waits (or at commit), and
	// writes it all with one writev: a wake-up and a write call per blob
	// cost 8% of a full snapshot's CPU in scheduling alone.
	static constexpr size_t kAppendBatchBytes = 1u << 20;

	explicit ChunkWriter(Store &store) : store_(store) {}
	// Finishes a pack already handed to the finisher; drops the queue and
	// the unfinished pack.
	~ChunkWriter();
	ChunkWriter(const ChunkWriter &) = delete;
	ChunkWriter &operator=(const ChunkWriter &) = delete;

	Result<ChunkId> put(ChunkCodec &codec, std::span<const uint8_t> data, ChunkType type);
	Result<void> commit();

	uint64_t bytesAdded() const { return bytesAdded_; }
	uint64_t chunksNew() const { return chunksNew_; }
	uint64_t chunksReused() const { return chunksReused_; }

private:
	struct Blob {
		ChunkId id;
		ChunkType type;
		uint32_t rawLength;
		Bytes bytes;
	};

	void appenderLoop();
	void finisherLoop();
	// On the appender thread, without mutex_.
	Result<void> append(std::deque<Blob> &blobs);
	Result<void> handOff();
	// Callers hold mutex_.
	void failLocked(const Error &e);
	std::unexpected<Error> errorLocked() const { return std::unexpected(*error_); }
	void startThreadsLocked();

	Store &store_;
	std::atomic<uint64_t> bytesAdded_{0};
	std::atomic<uint64_t> chunksNew_{0};
	std::atomic<uint64_t> chunksReused_{0};

	std::mutex mutex_;
	std::condition_variable appenderCv_; // the appender: blobs, a flush, or stop
	std::condition_variable finisherCv_; // the finisher: a pack, or stop
	std::condition_variable stateCv_;    // put() and commit(): room, flushed, finished, failed
	// Ids put in this job and not yet in the store's map (queued, in the
	// pack being filled, at the finisher): a job's memory does not grow
	// with the disk it copies.
	std::unordered_set<ChunkId, ChunkIdHash> pending_;
	std::deque<Blob> queue_;
	size_t queueBytes_ = 0;
	bool flushRequested_ = false;
	bool stopping_ = false;
	bool finisherStopping_ = false;
	std::optional<Error> error_;
	// Only the appender touches pack_; only the finisher touches
	// *finishing_ while it is set (it is set and reset under mutex_).
	std::optional<PackWriter> pack_;
	std::optional<PackWriter> finishing_;
	std::thread appender_;
	std::thread finisher_;
};

} // namespace virtsnap::store
