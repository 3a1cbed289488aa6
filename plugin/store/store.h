// The chunk store (FORMAT.md) on a backend: a directory, RADOS or S3. What
// it promises whatever the backend:
//  - a chunk, once put and committed, reads back bit for bit or fails loudly;
//  - nothing becomes visible before it is durable, and a manifest only
//    after every chunk it names;
//  - readers never see a half-written object, whatever crashes;
//  - with leases (lease.h) held as they should be, gc on one host never
//    removes what a snapshot in flight on another needs.
// One Store may be shared by threads: lookups and reads are concurrent.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "backend.h"
#include "chunk_codec.h"
#include "chunk_map.h"
#include "chunk_map_cache.h"
#include "key_domain.h"
#include "lease.h"
#include "manifest.h"
#include "pack.h"

namespace virtsnap::store {

namespace fs = std::filesystem;

class ChunkWriter;

// The store's config.json, as Store::open reads it; `where` names the store
// in errors.
struct StoreConfig {
	std::string storeId;
	uint32_t chunkSize = 0;
	std::string defaultDomainHex;
	Compression compression; // "compression"; absent: zstd:1
	bool manifestZeroRuns = false; // format version 3 (store.cc)
};
Result<StoreConfig> parseStoreConfig(std::span<const uint8_t> bytes, const std::string &where);

// Objects' names (FORMAT.md), for what works on the objects themselves
// (snapshot_retention.h); everything else goes through Store.
inline constexpr const char *kConfigName = "config.json";
std::string keyDomainName(const std::string &domainHex);
std::string manifestName(const std::string &snapshotId);
std::string recordName(const std::string &kind, const std::string &id);

struct StoreOptions {
	LeaseOptions lease;
	// Where the chunk map keeps its runs (chunk_map.h): unnamed files, in
	// the temporary directory when empty. Unused with a stateDir.
	fs::path chunkMapDir;
	// The host's state directory: the chunk map is kept in its
	// chunk-map/<store id>/ between processes (chunk_map_cache.h), saved
	// at the end of an open that learnt or forgot a pack and when the
	// Store is destroyed if it changed since. Empty: every open learns it
	// from every pack index.
	fs::path stateDir;
};

class Store
{
public:
	// 64 KiB: QEMU's default bitmap granularity and qcow2 cluster size,
	// and the best trade-off measured when every chunk id was held in
	// memory (tests/bench/CHUNK_SIZE.md): smaller chunks grow less on
	// scattered 4 KiB writes but cost 4x the objects (and chunk map).
	static constexpr uint32_t kDefaultChunkSize = 64 * 1024;

	// Creates the store; creates the key file too if it is absent (then
	// *keyCreated is set). Refuses a backend that already holds a store.
	// `compression` is what its writers will use (config.json).
	static Result<void> init(Backend &backend, const fs::path &keyFile, uint32_t chunkSize, bool *keyCreated,
				 Compression compression = {});
	// StoreNotInitialized, KeyFileError or WrongKey before touching anything.
	static Result<std::unique_ptr<Store>> open(std::unique_ptr<Backend> backend, const fs::path &keyFile,
						   StoreOptions options = {});
	// The same, for a store in a local directory.
	static Result<void> init(const fs::path &dir, const fs::path &keyFile, uint32_t chunkSize, bool *keyCreated,
				 Compression compression = {});
	static Result<std::unique_ptr<Store>> open(const fs::path &dir, const fs::path &keyFile,
						   StoreOptions options = {});
	~Store();

	Backend &backend() const { return *backend_; }
	std::string describe() const { return backend_->describe(); }
	const std::string &storeId() const { return storeId_; }
	uint32_t chunkSize() const { return chunkSize_; }
	const Compression &compression() const { return compression_; }
	// The default key domain: the one every manifest, pack index and
	// record is sealed with, and unencrypted snapshots' chunks.
	const KeyDomain &domain() const { return domain_; }
	// Any key domain of the store (FORMAT.md, "Keys"): a KMS key's. Read
	// from keys/ on first use, so a domain another host made is found;
	// the zero id is the default domain. NotFoundException when the store
	// has no such domain.
	Result<const KeyDomain *> domain(const DomainId &id) const;
	Result<const KeyDomain *> domain(const std::string &idHex) const;
	// A new key domain, wrapped by the master key under keys/.
	Result<const KeyDomain *> createDomain();

	std::unique_ptr<ChunkCodec> newCodec() const { return std::make_unique<ChunkCodec>(domain_, compression_); }
	Result<std::unique_ptr<ChunkCodec>> newCodec(const DomainId &id) const;
	// The codec of a snapshot's chunks and index pages: its kmsKeyId's
	// domain, the default one when it has none.
	Result<std::unique_ptr<ChunkCodec>> codecOf(const Manifest &m) const;
	std::unique_ptr<ChunkWriter> newWriter();

	bool contains(const ChunkId &id) const;
	// Reads, authenticates and decompresses one stored chunk (not the zero id).
	Result<Bytes> readChunk(ChunkCodec &codec, const ChunkId &id);
	// Learns the packs other writers (processes, hosts) made since the
	// last refresh, and forgets the ones gc removed.
	Result<void> refresh();

	// Leases (lease.h). A shared one refreshes the chunk map once taken,
	// so that nothing gc removed before is found by dedup afterwards.
	Result<std::unique_ptr<Lease>> lease(Lease::Kind kind, const std::string &purpose);
	const StoreOptions &options() const { return options_; }

	Result<void> putManifest(const Manifest &m, bool overwrite = false);
	Result<Manifest> getManifest(const std::string &snapshotId) const;
	Result<std::vector<Manifest>> listManifests() const;
	// The ids of every manifest, without reading them.
	Result<std::vector<std::string>> listManifestIds() const;
	Result<void> deleteManifest(const std::string &snapshotId);

	// Small mutable records (volume tags, instance attributes), sealed
	// JSON under records/<kind>/<id>. An absent record reads as nullopt.
	Result<void> putRecord(const std::string &kind, const std::string &id, const std::string &json);
	// putRecord that fails with ObjectExists when the record is there: of
	// concurrent creators (any host) exactly one succeeds.
	Result<void> createRecord(const std::string &kind, const std::string &id, const std::string &json);
	Result<std::optional<std::string>> getRecord(const std::string &kind, const std::string &id) const;
	Result<std::vector<std::string>> listRecordIds(const std::string &kind) const;
	// Not an error when it is absent.
	Result<void> removeRecord(const std::string &kind, const std::string &id);

	struct ChunkLocation {
		PackId pack;
		uint64_t offset;
		uint32_t length;
	};
	std::optional<ChunkLocation> locate(const ChunkId &id) const;

	// For readers that batch many chunks into few reads (restore): where a
	// chunk's blob is, with its pack as a number that stays valid as long
	// as this Store (gc never reuses one), and a read of raw pack bytes,
	// which may span several blobs. The blobs still go through
	// ChunkCodec::decode, which checks each one.
	struct BlobRef {
		uint32_t pack;
		uint32_t length;
		uint64_t offset;
	};
	std::optional<BlobRef> findBlob(const ChunkId &id) const;
	Result<void> readPackBytes(uint32_t pack, uint64_t offset, std::span<uint8_t> out);

	// After gc deleted packs: drops their chunks from the map, so no lookup
	// or dedup ever points at them again.
	void forgetPacks(const std::vector<PackId> &packs);

private:
	friend class ChunkWriter;
	Store(std::unique_ptr<Backend> backend, StoreOptions options)
		: backend_(std::move(backend)), options_(options),
		  chunks_(std::make_unique<ChunkMap>(ChunkMap::Options{.dir = options.chunkMapDir}))
	{
	}
	Result<void> addPackLocked(const PackIndex &index);
	void loadChunkMap();
	void saveChunkMap();
	std::optional<ChunkMap::Location> findLocked(const ChunkId &id) const;
	// The pack a map entry names, if it is still known.
	std::optional<PackId> packOf(uint32_t ordinal) const;

	std::unique_ptr<Backend> backend_;
	StoreOptions options_;
	std::string storeId_;
	uint32_t chunkSize_ = kDefaultChunkSize;
	Compression compression_;
	bool manifestZeroRuns_ = false; // FORMAT.md, "Manifest"
	KeyDomain domain_;
	crypto::SecretKey master_; // unwraps the other domains when first used
	mutable std::shared_mutex domainsMutex_;
	// Stable addresses: callers keep the pointers as long as the Store.
	mutable std::unordered_map<std::string, std::unique_ptr<KeyDomain>> domains_;

	mutable std::shared_mutex mutex_;
	// Which pack holds each chunk, in bounded memory (FORMAT.md, "The
	// chunk map").
	std::unique_ptr<ChunkMap> chunks_;
	std::vector<PackId> packs_;                      // by ordinal; a forgotten one stays, unnamed
	std::unordered_set<std::string> packNames_;      // the packs known now
	std::unique_ptr<ChunkMapCache> cache_;           // with a stateDir
	uint64_t unsaved_ = 0;                           // packs learnt or forgotten since the cache
};

} // namespace virtsnap::store
