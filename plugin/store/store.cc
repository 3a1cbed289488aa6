#include "store.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "chunk_writer.h"
#include "core/file_util.h"
#include "core/ids.h"
#include "crypto/crypto.h"
#include "json/json.h"
#include "local_backend.h"

namespace virtsnap::store {

namespace {

constexpr const char *kFormatName = "virtsnap-store";
// Version 2 is version 1 whose chunks may be lz4 (FORMAT.md, "Chunks"); a
// reader from before lz4 refuses it at open instead of failing on its
// chunks. Version 3 is version 2 whose manifests may write runs of zero
// index pages (FORMAT.md, "Manifest"), which every store made now is:
// a reader from before them refuses it at open, where it would have failed
// on nearly every manifest. Stores made before keep their version and
// their manifests stay readable by the readers they had. This virtsnap
// reads all three.
constexpr int kFormatVersion = 1;
constexpr int kZeroRunsFormatVersion = 3;
constexpr const char *kConfig = kConfigName;

bool isPowerOfTwo(uint32_t v)
{
	return v && !(v & (v - 1));
}

Result<crypto::SecretKey> masterKey(const fs::path &keyFile, bool *created)
{
	*created = false;
	if (fs::exists(keyFile))
		return crypto::loadKeyFile(keyFile);
	VS_ASSIGN(auto key, crypto::SecretKey::random());
	VS_TRY(crypto::writeKeyFile(keyFile, key));
	*created = true;
	return key;
}

std::span<const uint8_t> bytesOf(const std::string &s)
{
	return std::span((const uint8_t *)s.data(), s.size());
}

} // namespace

std::string keyDomainName(const std::string &domainHex)
{
	return "keys/" + domainHex + ".key";
}

Result<void> Store::init(Backend &backend, const fs::path &keyFile, uint32_t chunkSize, bool *keyCreated,
			 Compression compression)
{
	if (!isPowerOfTwo(chunkSize) || chunkSize < kMinChunkSize || chunkSize > kMaxChunkSize)
		return fail(errc::kInvalidParameterValue,
			    "chunk size " + std::to_string(chunkSize) + " must be a power of two from 4 KiB to 16 MiB");
	auto existing = backend.stat(kConfig);
	if (existing)
		return fail(errc::kStoreExists, "store " + backend.describe() + " is already initialised");
	if (existing.error().code != errc::kObjectNotFound)
		return std::unexpected(existing.error());

	VS_ASSIGN(crypto::SecretKey master, masterKey(keyFile, keyCreated));
	uint8_t rawStoreId[8];
	VS_TRY(crypto::randomBytes(rawStoreId));
	std::string storeId = toHex(rawStoreId);
	VS_ASSIGN(auto domain, KeyDomain::generate());
	VS_ASSIGN(auto wrapped, wrapDomain(domain, master, storeId));
	VS_TRY(backend.create(keyDomainName(domain.idHex()), wrapped));

	// The config comes last: its presence is what makes the store exist,
	// and of two inits racing, one makes it.
	Json config = Json::object();
	config.set("format", Json::string(kFormatName));
	config.set("version", Json::integer(kZeroRunsFormatVersion));
	config.set("store_id", Json::string(storeId));
	config.set("chunk_size", Json::integer(chunkSize));
	config.set("compression", Json::string(compression.name()));
	config.set("default_key_domain", Json::string(domain.idHex()));
	config.set("created", Json::string(isoTimeNow()));
	std::string text = config.dump(true) + "\n";
	auto made = backend.create(kConfig, bytesOf(text));
	if (!made && made.error().code == errc::kObjectExists)
		return fail(errc::kStoreExists, "store " + backend.describe() + " is already initialised");
	return made;
}

Result<void> Store::init(const fs::path &dir, const fs::path &keyFile, uint32_t chunkSize, bool *keyCreated,
			 Compression compression)
{
	LocalBackend backend(dir);
	return init(backend, keyFile, chunkSize, keyCreated, compression);
}

Result<std::unique_ptr<Store>> Store::open(const fs::path &dir, const fs::path &keyFile, StoreOptions options)
{
	return open(std::make_unique<LocalBackend>(dir), keyFile, options);
}

Result<StoreConfig> parseStoreConfig(std::span<const uint8_t> bytes, const std::string &where)
{
	auto config = Json::parse(std::string_view((const char *)bytes.data(), bytes.size()));
	if (!config || config->getString("format").value_or("") != kFormatName)
		return fail(errc::kCorrupt, where + "/config.json is not a virtsnap store config");
	int64_t version = config->getInt("version").value_or(0);
	if (version < kFormatVersion || version > kZeroRunsFormatVersion)
		return fail(errc::kCorrupt, "store " + where + " has format version " + std::to_string(version) +
						    "; this virtsnap reads versions " + std::to_string(kFormatVersion) +
						    " to " + std::to_string(kZeroRunsFormatVersion));
	StoreConfig c;
	c.manifestZeroRuns = version >= kZeroRunsFormatVersion;
	c.storeId = config->getString("store_id").value_or("");
	c.defaultDomainHex = config->getString("default_key_domain").value_or("");
	if (c.storeId.empty() || c.defaultDomainHex.size() != 16 || !fromHex(c.defaultDomainHex))
		return fail(errc::kCorrupt, where + "/config.json is incomplete");
	// Read whole, not cut to 32 bits first: 2^32 + 4096 is no chunk size.
	int64_t chunkSize = config->getInt("chunk_size").value_or(0);
	if (chunkSize < kMinChunkSize || chunkSize > kMaxChunkSize || !isPowerOfTwo(uint32_t(chunkSize)))
		return fail(errc::kCorrupt, where + "/config.json has chunk size " + std::to_string(chunkSize) +
						    ", which no store has");
	c.chunkSize = uint32_t(chunkSize);
	// Absent in stores made before the choice existed: they used zstd -1.
	if (auto name = config->getString("compression")) {
		auto compression = Compression::parse(*name);
		if (!compression)
			return fail(errc::kCorrupt, where + "/config.json has compression '" + *name +
							    "', which this virtsnap does not know");
		c.compression = *compression;
	}
	return c;
}

Result<std::unique_ptr<Store>> Store::open(std::unique_ptr<Backend> backend, const fs::path &keyFile,
					   StoreOptions options)
{
	const std::string where = backend->describe();
	auto configBytes = backend->get(kConfig);
	if (!configBytes) {
		if (configBytes.error().code == errc::kObjectNotFound)
			return fail(errc::kStoreNotInitialized, "no store at " + where + " (run 'virtsnap init' first)");
		return std::unexpected(configBytes.error());
	}
	VS_ASSIGN(StoreConfig config, parseStoreConfig(*configBytes, where));
	VS_ASSIGN(auto master, crypto::loadKeyFile(keyFile));
	std::unique_ptr<Store> s(new Store(std::move(backend), options));
	s->storeId_ = config.storeId;
	s->chunkSize_ = config.chunkSize;
	s->compression_ = config.compression;
	s->manifestZeroRuns_ = config.manifestZeroRuns;
	const std::string &domainHex = config.defaultDomainHex;

	auto wrapped = s->backend_->get(keyDomainName(domainHex));
	if (!wrapped) {
		if (wrapped.error().code == errc::kObjectNotFound)
			return fail(errc::kCorrupt, "store " + where + " lacks its key domain " + domainHex);
		return std::unexpected(wrapped.error());
	}
	auto domain = unwrapDomain(*wrapped, master, s->storeId_);
	if (!domain) {
		if (domain.error().code == errc::kWrongKey)
			return fail(errc::kWrongKey, "key file " + keyFile.string() + " does not open store " + where);
		return std::unexpected(domain.error());
	}
	s->domain_ = std::move(*domain);
	s->master_ = master;
	s->loadChunkMap();
	VS_TRY(s->refresh());
	// Learning a large store leaves runs of several sizes: few are cheaper
	// to ask from here on.
	if (auto compacted = s->chunks_->compact(); !compacted)
		return fail(compacted.error().code, "chunk map of store " + where + ": " + compacted.error().message);
	// Now rather than only at the end: another process opening the store
	// meanwhile (or this one, killed) learns only what changed after.
	if (s->unsaved_)
		s->saveChunkMap();
	return s;
}

Store::~Store()
{
	if (unsaved_)
		saveChunkMap();
}

void Store::loadChunkMap()
{
	if (options_.stateDir.empty())
		return;
	// Without a directory of its own, the map is learnt as it always was.
	fs::path dir = ChunkMapCache::dirFor(options_.stateDir, storeId_);
	if (!makeDirs(dir, 0700) || ::access(dir.c_str(), R_OK | W_OK | X_OK) != 0)
		return;
	cache_ = std::make_unique<ChunkMapCache>(dir, storeId_);
	// Runs made next to the saved ones, so that a save links them.
	chunks_ = std::make_unique<ChunkMap>(ChunkMap::Options{.dir = dir});
	auto loaded = std::make_unique<ChunkMap>(ChunkMap::Options{.dir = dir});
	std::string why;
	auto packs = cache_->load(*loaded, &why);
	if (!packs) {
		// Missing is the first open's normal case, and anything else only
		// costs the learning: worth a line, never an error.
		std::error_code ec;
		if (fs::exists(dir / "map", ec))
			std::fprintf(stderr, "virtsnap: learning the chunk map of %s again: the one saved in %s is unusable (%s)\n",
				     describe().c_str(), dir.c_str(), why.c_str());
		return;
	}
	chunks_ = std::move(loaded);
	std::vector<uint32_t> forgotten;
	for (uint32_t i = 0; i < packs->size(); i++) {
		packs_.push_back((*packs)[i].id);
		if ((*packs)[i].forgotten)
			forgotten.push_back(i);
		else
			packNames_.insert(toHex((*packs)[i].id));
	}
	chunks_->forget(forgotten);
}

void Store::saveChunkMap()
{
	if (!cache_)
		return;
	std::unique_lock lock(mutex_);
	std::vector<ChunkMapCache::Pack> packs;
	packs.reserve(packs_.size());
	for (const PackId &p : packs_)
		packs.push_back({p, !packNames_.count(toHex(p))});
	// A save that fails leaves the one before, which a later open brings
	// up to date as it would have this one.
	if (cache_->save(*chunks_, packs))
		unsaved_ = 0;
}

Result<const KeyDomain *> Store::domain(const DomainId &id) const
{
	if (id == DomainId{} || id == domain_.id)
		return &domain_;
	const std::string hex = toHex(id);
	{
		std::shared_lock lock(domainsMutex_);
		if (auto it = domains_.find(hex); it != domains_.end())
			return it->second.get();
	}
	auto wrapped = backend_->get(keyDomainName(hex));
	if (!wrapped && wrapped.error().code == errc::kObjectNotFound)
		return fail(errc::kKeyNotFound, "key " + hex + " does not exist in store " + describe());
	if (!wrapped)
		return std::unexpected(wrapped.error());
	auto unwrapped = unwrapDomain(*wrapped, master_, storeId_);
	if (!unwrapped)
		return fail(unwrapped.error().code == errc::kWrongKey ? errc::kCorrupt : unwrapped.error().code,
			    "key domain " + hex + " of store " + describe() + " does not open with its master key");
	if (unwrapped->id != id)
		return fail(errc::kCorrupt, "keys/" + hex + ".key of store " + describe() + " holds another domain");
	std::unique_lock lock(domainsMutex_);
	auto &slot = domains_[hex];
	if (!slot)
		slot = std::make_unique<KeyDomain>(std::move(*unwrapped));
	return slot.get();
}

Result<const KeyDomain *> Store::domain(const std::string &idHex) const
{
	if (idHex.empty())
		return &domain_;
	auto raw = idHex.size() == 2 * sizeof(DomainId) ? fromHex(idHex) : std::nullopt;
	if (!raw || raw->size() != sizeof(DomainId) || idHex.find_first_not_of("0123456789abcdef") != std::string::npos)
		return fail(errc::kKeyNotFound, "'" + idHex + "' is not a key id (16 lowercase hex digits)");
	DomainId id;
	std::copy(raw->begin(), raw->end(), id.begin());
	return domain(id);
}

Result<const KeyDomain *> Store::createDomain()
{
	VS_ASSIGN(KeyDomain made, KeyDomain::generate());
	VS_ASSIGN(auto wrapped, wrapDomain(made, master_, storeId_));
	// create: a (vanishingly unlikely) id taken already is not overwritten.
	VS_TRY(backend_->create(keyDomainName(made.idHex()), wrapped));
	std::unique_lock lock(domainsMutex_);
	auto &slot = domains_[made.idHex()];
	slot = std::make_unique<KeyDomain>(std::move(made));
	return slot.get();
}

Result<std::unique_ptr<ChunkCodec>> Store::newCodec(const DomainId &id) const
{
	VS_ASSIGN(const KeyDomain *d, domain(id));
	return std::make_unique<ChunkCodec>(*d, compression_);
}

Result<std::unique_ptr<ChunkCodec>> Store::codecOf(const Manifest &m) const
{
	VS_ASSIGN(const KeyDomain *d, domain(m.encrypted ? m.kmsKeyId : std::string()));
	return std::make_unique<ChunkCodec>(*d, compression_);
}

std::unique_ptr<ChunkWriter> Store::newWriter()
{
	return std::make_unique<ChunkWriter>(*this);
}

Result<std::unique_ptr<Lease>> Store::lease(Lease::Kind kind, const std::string &purpose)
{
	VS_ASSIGN(auto lease, Lease::acquire(*backend_, kind, purpose, options_.lease));
	if (kind == Lease::Kind::Shared)
		VS_TRY(refresh());
	return lease;
}

Result<void> Store::refresh()
{
	// Packs known before the listing began: only those can be judged gone
	// by it (one a writer of ours adds meanwhile may be missing from it).
	std::unordered_set<std::string> knownBefore;
	{
		std::shared_lock lock(mutex_);
		knownBefore = packNames_;
	}
	std::vector<PackId> listed;
	std::unordered_set<std::string> listedNames;
	VS_TRY(backend_->list("packs/", [&](const ObjectInfo &info) {
		bool isIndex = false;
		if (auto id = packIdOf(info.name, &isIndex); id && isIndex) {
			listed.push_back(*id);
			listedNames.insert(toHex(*id));
		}
	}));
	for (const PackId &id : listed) {
		if (knownBefore.count(toHex(id)))
			continue;
		auto index = PackReader(*backend_, id).index(domain_);
		if (!index) {
			// Removed between listing and reading: not an error.
			if (index.error().code == errc::kObjectNotFound)
				continue;
			return fail(index.error().code, "pack index " + packIndexName(id) + " of " + describe() + ": " +
								index.error().message);
		}
		std::unique_lock lock(mutex_);
		VS_TRY(addPackLocked(*index));
	}
	std::vector<PackId> gone;
	{
		std::shared_lock lock(mutex_);
		for (const PackId &p : packs_)
			if (knownBefore.count(toHex(p)) && !listedNames.count(toHex(p)))
				gone.push_back(p);
	}
	forgetPacks(gone);
	return {};
}

Result<void> Store::addPackLocked(const PackIndex &index)
{
	std::string name = toHex(index.packId);
	if (!packNames_.insert(name).second)
		return {};
	uint32_t ordinal = uint32_t(packs_.size());
	packs_.push_back(index.packId);
	unsaved_++;
	auto added = chunks_->add(ordinal, index.entries);
	if (!added) {
		// Unknown, so that the next refresh tries again.
		packNames_.erase(name);
		chunks_->forget({ordinal});
		return fail(added.error().code, "chunk map of store " + describe() + ": " + added.error().message);
	}
	return {};
}

void Store::forgetPacks(const std::vector<PackId> &packs)
{
	if (packs.empty())
		return;
	std::unordered_set<std::string> gone;
	for (const PackId &p : packs)
		gone.insert(toHex(p));
	std::unique_lock lock(mutex_);
	std::vector<uint32_t> dropped;
	for (uint32_t i = 0; i < packs_.size(); i++)
		// Ordinals stay: a BlobRef elsewhere may still name one.
		if (gone.count(toHex(packs_[i])) && packNames_.erase(toHex(packs_[i])))
			dropped.push_back(i);
	unsaved_ += dropped.size();
	chunks_->forget(dropped);
}

std::optional<ChunkMap::Location> Store::findLocked(const ChunkId &id) const
{
	// A map file that cannot be read finds nothing: dedup then stores the
	// chunk again, and a reader refreshes and fails naming the chunk.
	auto found = chunks_->find(id);
	return found ? *found : std::nullopt;
}

bool Store::contains(const ChunkId &id) const
{
	std::shared_lock lock(mutex_);
	return findLocked(id).has_value();
}

std::optional<Store::ChunkLocation> Store::locate(const ChunkId &id) const
{
	std::shared_lock lock(mutex_);
	auto l = findLocked(id);
	if (!l)
		return std::nullopt;
	return ChunkLocation{packs_[l->pack], l->offset, l->length};
}

std::optional<Store::BlobRef> Store::findBlob(const ChunkId &id) const
{
	std::shared_lock lock(mutex_);
	auto l = findLocked(id);
	if (!l)
		return std::nullopt;
	return BlobRef{l->pack, l->length, l->offset};
}

std::optional<PackId> Store::packOf(uint32_t ordinal) const
{
	std::shared_lock lock(mutex_);
	if (ordinal >= packs_.size())
		return std::nullopt;
	return packs_[ordinal];
}

Result<void> Store::readPackBytes(uint32_t pack, uint64_t offset, std::span<uint8_t> out)
{
	auto id = packOf(pack);
	if (!id)
		return fail(errc::kInternal, "no pack number " + std::to_string(pack));
	auto read = PackReader(*backend_, *id).read(offset, out);
	if (!read)
		return fail(read.error().code == errc::kObjectNotFound ? errc::kCorrupt : read.error().code,
			    "read pack " + toHex(*id) + " at " + std::to_string(offset) + ": " + read.error().message);
	return {};
}

Result<Bytes> Store::readChunk(ChunkCodec &codec, const ChunkId &id)
{
	auto loc = locate(id);
	if (!loc) {
		VS_TRY(refresh());
		loc = locate(id);
	}
	if (!loc)
		return fail(errc::kCorrupt, "chunk " + idHex(id) + " is missing from store " + describe());
	Bytes blob(loc->length);
	auto r = PackReader(*backend_, loc->pack).read(loc->offset, blob);
	if (!r && r.error().code == errc::kObjectNotFound) {
		// A reader that holds no lease (an NBD export) may know a pack gc
		// has since repacked: what the store says now, once.
		VS_TRY(refresh());
		loc = locate(id);
		if (!loc)
			return fail(errc::kCorrupt, "chunk " + idHex(id) + " is missing from store " + describe());
		blob.resize(loc->length);
		r = PackReader(*backend_, loc->pack).read(loc->offset, blob);
	}
	if (!r)
		return fail(r.error().code == errc::kObjectNotFound ? errc::kCorrupt : r.error().code,
			    "read chunk " + idHex(id) + " from pack " + toHex(loc->pack) + ": " + r.error().message);
	auto plain = codec.decode(id, blob);
	if (!plain)
		return fail(plain.error().code, plain.error().message + " (pack " + toHex(loc->pack) + ", offset " +
							std::to_string(loc->offset) + ")");
	return plain;
}

} // namespace virtsnap::store
