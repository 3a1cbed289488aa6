#include "store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "core/ids.h"
#include "json/json.h"

namespace virtsnap::store {

namespace {

constexpr const char *kFormatName = "virtsnap-store";
constexpr int kFormatVersion = 1;

Result<UniqueFd> lockShared(const fs::path &dir)
{
	fs::path path = dir / "lock";
	UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	if (!fd.isValid())
		return failErrno("open " + path.string(), errno);
	if (::flock(fd.get(), LOCK_SH) != 0)
		return failErrno("lock " + path.string(), errno);
	return fd;
}

bool isPowerOfTwo(uint32_t v)
{
	return v && !(v & (v - 1));
}

} // namespace

Result<void> Store::init(const fs::path &dir, const fs::path &keyFile, uint32_t chunkSize, bool *keyCreated)
{
	if (!isPowerOfTwo(chunkSize) || chunkSize < 4096 || chunkSize > (16u << 20))
		return fail(errc::kInvalidParameterValue,
			    "chunk size " + std::to_string(chunkSize) + " must be a power of two from 4 KiB to 16 MiB");
	struct stat st;
	if (::stat((dir / "config.json").c_str(), &st) == 0)
		return fail(errc::kStoreExists, "store " + dir.string() + " is already initialised");

	*keyCreated = false;
	crypto::SecretKey master;
	if (::stat(keyFile.c_str(), &st) == 0) {
		VS_ASSIGN(auto key, crypto::loadKeyFile(keyFile));
		master = key;
	} else {
		VS_ASSIGN(auto key, crypto::SecretKey::random());
		VS_TRY(crypto::writeKeyFile(keyFile, key));
		master = key;
		*keyCreated = true;
	}

	uint8_t rawStoreId[8];
	VS_TRY(crypto::randomBytes(rawStoreId));
	std::string storeId = toHex(rawStoreId);
	VS_ASSIGN(auto domain, KeyDomain::generate());

	VS_TRY(makeDirs(dir, 0750));
	for (const char *sub : {"keys", "packs", "snapshots", "scratch"})
		VS_TRY(makeDirs(dir / sub, 0750));
	VS_ASSIGN(auto wrapped, wrapDomain(domain, master, storeId));
	VS_TRY(writeFileAtomic(dir / "keys" / (domain.idHex() + ".key"), wrapped, 0600, false));

	// The config comes last: its presence is what makes the store exist.
	virtsnap::Json config = virtsnap::Json::object();
	config.set("format", virtsnap::Json::string(kFormatName));
	config.set("version", virtsnap::Json::integer(kFormatVersion));
	config.set("store_id", virtsnap::Json::string(storeId));
	config.set("chunk_size", virtsnap::Json::integer(chunkSize));
	config.set("default_key_domain", virtsnap::Json::string(domain.idHex()));
	config.set("created", virtsnap::Json::string(isoTimeNow()));
	std::string text = config.dump(true) + "\n";
	return writeFileAtomic(dir / "config.json", std::span((const uint8_t *)text.data(), text.size()), 0644,
			       false);
}

Result<std::unique_ptr<Store>> Store::open(const fs::path &dir, const fs::path &keyFile)
{
	auto configBytes = readFile(dir / "config.json");
	if (!configBytes) {
		if (!fs::exists(dir / "config.json"))
			return fail(errc::kStoreNotInitialized,
				    "no store at " + dir.string() + " (run 'virtsnap init' first)");
		return std::unexpected(configBytes.error());
	}
	auto config = virtsnap::Json::parse(std::string_view((const char *)configBytes->data(), configBytes->size()));
	if (!config || config->getString("format").value_or("") != kFormatName)
		return fail(errc::kCorrupt, dir.string() + "/config.json is not a virtsnap store config");
	if (config->getInt("version").value_or(0) != kFormatVersion)
		return fail(errc::kCorrupt, "store " + dir.string() + " has format version " +
						    std::to_string(config->getInt("version").value_or(0)) +
						    "; this virtsnap reads version " + std::to_string(kFormatVersion));

	VS_ASSIGN(auto master, crypto::loadKeyFile(keyFile));

	std::unique_ptr<Store> s(new Store());
	s->dir_ = dir;
	s->storeId_ = config->getString("store_id").value_or("");
	s->chunkSize_ = uint32_t(config->getInt("chunk_size").value_or(0));
	std::string domainHex = config->getString("default_key_domain").value_or("");
	if (s->storeId_.empty() || !isPowerOfTwo(s->chunkSize_) || domainHex.size() != 16 ||
	    !fromHex(domainHex))
		return fail(errc::kCorrupt, dir.string() + "/config.json is incomplete");

	auto wrapped = readFile(dir / "keys" / (domainHex + ".key"));
	if (!wrapped)
		return fail(errc::kCorrupt, "store " + dir.string() + " lacks its key domain " + domainHex);
	auto domain = unwrapDomain(*wrapped, master, s->storeId_);
	if (!domain) {
		if (domain.error().code == errc::kWrongKey)
			return fail(errc::kWrongKey,
				    "key file " + keyFile.string() + " does not open store " + dir.string());
		return std::unexpected(domain.error());
	}
	s->domain_ = std::move(*domain);

	VS_ASSIGN(auto lock, lockShared(dir));
	s->lock_ = std::move(lock);
	VS_TRY(s->refresh());
	return s;
}

Store::~Store() = default;

std::unique_ptr<ChunkWriter> Store::newWriter()
{
	return std::make_unique<ChunkWriter>(*this);
}

Result<void> Store::refresh()
{
	fs::path packsDir = dir_ / "packs";
	std::error_code ec;
	std::vector<fs::path> found;
	for (auto it = fs::recursive_directory_iterator(packsDir, ec); !ec && it != fs::end(it); it.increment(ec)) {
		const fs::path &p = it->path();
		if (p.extension() == ".idx" && p.filename().string().find(".tmp-") == std::string::npos)
			found.push_back(p);
	}
	if (ec)
		return fail(errc::kIo, "list " + packsDir.string() + ": " + ec.message());

	for (const fs::path &p : found) {
		std::string name = p.stem().string();
		{
			std::shared_lock lock(mutex_);
			if (packNames_.count(name))
				continue;
		}
		VS_ASSIGN(auto sealed, readFile(p));
		auto plain = openObject(ObjectType::PackIndex, domain_.encKey, name, sealed);
		if (!plain)
			return fail(errc::kCorrupt, "pack index " + p.string() + ": " + plain.error().message);
		VS_ASSIGN(auto index, parsePackIndex(*plain));
		std::unique_lock lock(mutex_);
		addPackLocked(index);
	}
	return {};
}

void Store::addPackLocked(const PackIndex &index)
{
	std::string name = toHex(index.packId);
	if (!packNames_.insert(name).second)
		return;
	uint32_t ordinal = uint32_t(packs_.size());
	packs_.push_back(index.packId);
	packFds_.emplace_back();
	for (const PackEntry &e : index.entries)
		chunks_.try_emplace(e.id, Location{ordinal, e.length, e.offset});
}

bool Store::contains(const ChunkId &id) const
{
	std::shared_lock lock(mutex_);
	return chunks_.count(id) != 0;
}

std::optional<Store::ChunkLocation> Store::locate(const ChunkId &id) const
{
	std::shared_lock lock(mutex_);
	auto it = chunks_.find(id);
	if (it == chunks_.end())
		return std::nullopt;
	return ChunkLocation{packs_[it->second.pack], it->second.offset, it->second.length};
}

std::optional<Store::BlobRef> Store::findBlob(const ChunkId &id) const
{
	std::shared_lock lock(mutex_);
	auto it = chunks_.find(id);
	if (it == chunks_.end())
		return std::nullopt;
	return BlobRef{it->second.pack, it->second.length, it->second.offset};
}

Result<void> Store::readPackBytes(uint32_t pack, uint64_t offset, std::span<uint8_t> out)
{
	PackId id;
	{
		std::shared_lock lock(mutex_);
		if (pack >= packs_.size())
			return fail(errc::kInternal, "no pack number " + std::to_string(pack));
		id = packs_[pack];
	}
	VS_ASSIGN(auto fd, packFd(pack));
	if (auto r = preadAll(fd, out, offset); !r)
		return fail(r.error().code, "read pack " + toHex(id) + " at " + std::to_string(offset) + ": " +
						    r.error().message);
	// A batch reader reads each blob once: the page cache need not keep it.
	(void)::posix_fadvise(fd, off_t(offset), off_t(out.size()), POSIX_FADV_DONTNEED);
	return {};
}

Result<void> Store::lockExclusive()
{
	if (::flock(lock_.get(), LOCK_EX | LOCK_NB) == 0)
		return {};
	int err = errno;
	// A failed conversion has already dropped our shared lock (flock(2)):
	// take it back, as open() did, before reporting.
	while (::flock(lock_.get(), LOCK_SH) != 0 && errno == EINTR) {
	}
	if (err == EWOULDBLOCK)
		return fail(errc::kIncorrectState,
			    "store " + dir_.string() +
				    " is in use by another process (if virtsnapd runs, ask it: virtsnap gc)");
	return failErrno("lock " + (dir_ / "lock").string(), err);
}

void Store::unlockExclusive()
{
	while (::flock(lock_.get(), LOCK_SH) != 0 && errno == EINTR) {
	}
}

void Store::forgetPacks(const std::vector<PackId> &packs)
{
	std::unordered_set<std::string> gone;
	for (const PackId &p : packs)
		gone.insert(toHex(p));
	std::unique_lock lock(mutex_);
	std::vector<bool> dropped(packs_.size());
	bool any = false;
	for (uint32_t i = 0; i < packs_.size(); i++) {
		std::string name = toHex(packs_[i]);
		// Ordinals stay: a Location elsewhere may still name one.
		if (gone.count(name) && packNames_.erase(name)) {
			dropped[i] = true;
			packFds_[i].reset();
			any = true;
		}
	}
	if (any)
		std::erase_if(chunks_, [&](const auto &entry) { return dropped[entry.second.pack]; });
}

Result<int> Store::packFd(uint32_t pack)
{
	std::unique_lock lock(mutex_);
	if (!packFds_[pack].isValid()) {
		fs::path path = packPath(dir_, packs_[pack]);
		UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
		if (!fd.isValid())
			return failErrno("open pack " + path.string(), errno);
		packFds_[pack] = std::move(fd);
	}
	return packFds_[pack].get();
}

Result<Bytes> Store::readChunk(ChunkCodec &codec, const ChunkId &id)
{
	std::optional<Location> loc;
	PackId pack{};
	for (int attempt = 0; attempt < 2 && !loc; attempt++) {
		{
			std::shared_lock lock(mutex_);
			if (auto it = chunks_.find(id); it != chunks_.end()) {
				loc = it->second;
				// packs_ may grow (and move) once the lock is released.
				pack = packs_[it->second.pack];
			}
		}
		if (!loc && attempt == 0)
			VS_TRY(refresh());
	}
	if (!loc)
		return fail(errc::kCorrupt, "chunk " + idHex(id) + " is missing from the store");
	VS_ASSIGN(auto fd, packFd(loc->pack));
	Bytes blob(loc->length);
	if (auto r = preadAll(fd, blob, loc->offset); !r)
		return fail(r.error().code,
			    "read chunk " + idHex(id) + " from pack " + toHex(pack) + ": " + r.error().message);
	auto plain = codec.decode(id, blob);
	if (!plain)
		return fail(plain.error().code, plain.error().message + " (pack " + toHex(pack) + ", offset " +
							std::to_string(loc->offset) + ")");
	return plain;
}

namespace {

// Ids become file names: only plain names, never a path.
bool isPlainName(const std::string &s)
{
	return !s.empty() && s.size() <= 128 && s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") ==
							 std::string::npos;
}

} // namespace

fs::path Store::manifestPath(const std::string &snapshotId) const
{
	return dir_ / "snapshots" / (snapshotId + ".manifest");
}

Result<void> Store::putManifest(const Manifest &m, bool overwrite)
{
	if (!isPlainName(m.snapshotId))
		return fail(errc::kSnapshotIdMalformed, "'" + m.snapshotId + "' is not a snapshot id");
	std::string json = serializeManifest(m);
	auto sealed = sealObject(ObjectType::Manifest, domain_.id, domain_.encKey, m.snapshotId,
				 std::span((const uint8_t *)json.data(), json.size()));
	if (!sealed)
		return std::unexpected(sealed.error());
	return writeFileAtomic(manifestPath(m.snapshotId), *sealed, 0640, overwrite);
}

Result<Manifest> Store::getManifest(const std::string &snapshotId) const
{
	if (!isPlainName(snapshotId))
		return fail(errc::kSnapshotIdMalformed, "'" + snapshotId + "' is not a snapshot id");
	fs::path path = manifestPath(snapshotId);
	auto sealed = readFile(path);
	if (!sealed) {
		if (!fs::exists(path))
			return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " does not exist");
		return std::unexpected(sealed.error());
	}
	auto plain = openObject(ObjectType::Manifest, domain_.encKey, snapshotId, *sealed);
	if (!plain)
		return fail(errc::kCorrupt, "manifest of " + snapshotId + ": " + plain.error().message);
	auto m = parseManifest(std::string_view((const char *)plain->data(), plain->size()));
	if (!m)
		return fail(errc::kCorrupt, "manifest of " + snapshotId + ": " + m.error().message);
	if (m->snapshotId != snapshotId)
		return fail(errc::kCorrupt, "manifest of " + snapshotId + " names " + m->snapshotId);
	return m;
}

Result<std::vector<Manifest>> Store::listManifests() const
{
	std::vector<Manifest> out;
	std::error_code ec;
	for (auto it = fs::directory_iterator(dir_ / "snapshots", ec); !ec && it != fs::end(it); it.increment(ec)) {
		const fs::path &p = it->path();
		if (p.extension() != ".manifest")
			continue;
		auto m = getManifest(p.stem().string());
		if (!m) {
			// Deleted between listing and reading: not an error.
			if (m.error().code == errc::kSnapshotNotFound)
				continue;
			return std::unexpected(m.error());
		}
		out.push_back(std::move(*m));
	}
	if (ec)
		return fail(errc::kIo, "list " + (dir_ / "snapshots").string() + ": " + ec.message());
	std::sort(out.begin(), out.end(), [](const Manifest &a, const Manifest &b) {
		return std::tie(a.startTime, a.snapshotId) < std::tie(b.startTime, b.snapshotId);
	});
	return out;
}

Result<void> Store::deleteManifest(const std::string &snapshotId)
{
	if (!isPlainName(snapshotId))
		return fail(errc::kSnapshotIdMalformed, "'" + snapshotId + "' is not a snapshot id");
	fs::path path = manifestPath(snapshotId);
	if (::unlink(path.c_str()) != 0) {
		if (errno == ENOENT)
			return fail(errc::kSnapshotNotFound, "snapshot " + snapshotId + " does not exist");
		return failErrno("remove " + path.string(), errno);
	}
	return fsyncDir(path.parent_path());
}

fs::path Store::recordPath(const std::string &kind, const std::string &id) const
{
	return dir_ / "records" / kind / (id + ".json.sealed");
}

Result<void> Store::putRecord(const std::string &kind, const std::string &id, const std::string &json)
{
	if (!isPlainName(kind) || !isPlainName(id))
		return fail(errc::kInvalidParameterValue, "'" + kind + "/" + id + "' is not a record name");
	fs::path path = recordPath(kind, id);
	VS_TRY(makeDirs(path.parent_path(), 0750));
	auto sealed = sealObject(ObjectType::Record, domain_.id, domain_.encKey, kind + "/" + id,
				 std::span((const uint8_t *)json.data(), json.size()));
	if (!sealed)
		return std::unexpected(sealed.error());
	return writeFileAtomic(path, *sealed, 0640, true);
}

Result<std::optional<std::string>> Store::getRecord(const std::string &kind, const std::string &id) const
{
	if (!isPlainName(kind) || !isPlainName(id))
		return fail(errc::kInvalidParameterValue, "'" + kind + "/" + id + "' is not a record name");
	fs::path path = recordPath(kind, id);
	if (!fs::exists(path))
		return std::optional<std::string>();
	VS_ASSIGN(auto sealed, readFile(path));
	auto plain = openObject(ObjectType::Record, domain_.encKey, kind + "/" + id, sealed);
	if (!plain)
		return fail(errc::kCorrupt, "record " + kind + "/" + id + ": " + plain.error().message);
	return std::optional<std::string>(std::string(plain->begin(), plain->end()));
}

Result<std::vector<std::string>> Store::listRecordIds(const std::string &kind) const
{
	std::vector<std::string> ids;
	std::error_code ec;
	const std::string suffix = ".json.sealed";
	for (auto it = fs::directory_iterator(dir_ / "records" / kind, ec); !ec && it != fs::end(it);
	     it.increment(ec)) {
		std::string name = it->path().filename().string();
		if (name.size() > suffix.size() && name.ends_with(suffix))
			ids.push_back(name.substr(0, name.size() - suffix.size()));
	}
	if (ec && ec != std::errc::no_such_file_or_directory)
		return fail(errc::kIo, "list " + (dir_ / "records" / kind).string() + ": " + ec.message());
	std::sort(ids.begin(), ids.end());
	return ids;
}

Result<ChunkId> ChunkWriter::put(ChunkCodec &codec, std::span<const uint8_t> data, ChunkType type)
{
	ChunkId id = codec.idOf(data);
	if (store_.contains(id)) {
		chunksReused_++;
		return id;
	}
	{
		std::lock_guard lock(mutex_);
		if (error_)
			return errorLocked();
		// Put in this job already (maybe by another thread right now), or
		// its pack became visible since the check above.
		if (pending_.count(id) || store_.contains(id)) {
			chunksReused_++;
			return id;
		}
		pending_.insert(id);
	}
	// Encode outside the lock: this is where the CPU goes.
	Blob blob{id, type, uint32_t(data.size()), {}};
	blob.bytes.reserve(data.size() + kBlobOverhead);
	auto encoded = codec.encode(id, type, data, blob.bytes);

	std::unique_lock lock(mutex_);
	if (!encoded) {
		// The job fails: other threads that took this id for pending
		// return ids of a snapshot that will not be committed.
		failLocked(encoded.error());
		return std::unexpected(encoded.error());
	}
	stateCv_.wait(lock, [&] { return queueBytes_ + blob.bytes.size() <= kQueueBytes || queue_.empty() || error_; });
	if (error_)
		return errorLocked();
	queueBytes_ += blob.bytes.size();
	bytesAdded_ += blob.bytes.size();
	chunksNew_++;
	queue_.push_back(std::move(blob));
	startThreadsLocked();
	if (queueBytes_ >= kAppendBatchBytes)
		appenderCv_.notify_one();
	return id;
}

void ChunkWriter::startThreadsLocked()
{
	if (!appender_.joinable())
		appender_ = std::thread([this] { appenderLoop(); });
	if (!finisher_.joinable())
		finisher_ = std::thread([this] { finisherLoop(); });
}

void ChunkWriter::failLocked(const Error &e)
{
	if (!error_)
		error_ = e;
	stateCv_.notify_all();
	appenderCv_.notify_all();
}

void ChunkWriter::appenderLoop()
{
	std::unique_lock lock(mutex_);
	for (;;) {
		appenderCv_.wait(lock, [&] { return queueBytes_ >= kAppendBatchBytes || flushRequested_ || stopping_; });
		if (stopping_)
			return;
		if (!queue_.empty()) {
			std::deque<Blob> batch;
			batch.swap(queue_);
			queueBytes_ = 0;
			stateCv_.notify_all();
			// After a failure the queue is only emptied.
			if (error_)
				continue;
			lock.unlock();
			auto r = append(batch);
			batch.clear();
			lock.lock();
			if (!r)
				failLocked(r.error());
			continue;
		}
		// Flush (commit): the queue is empty, so the pack holds every
		// blob; it goes to the finisher like a full one.
		if (pack_ && !error_) {
			lock.unlock();
			auto r = handOff();
			lock.lock();
			if (!r)
				failLocked(r.error());
		}
		flushRequested_ = false;
		stateCv_.notify_all();
	}
}

Result<void> ChunkWriter::append(std::deque<Blob> &blobs)
{
	std::vector<PackWriter::Append> run;
	for (size_t i = 0; i < blobs.size();) {
		if (!pack_) {
			VS_ASSIGN(auto pack, PackWriter::create(store_.dir()));
			pack_.emplace(std::move(pack));
		}
		// Up to the blob that takes the pack past its target size.
		run.clear();
		for (uint64_t size = pack_->size(); i < blobs.size() && size < kPackTargetSize; i++) {
			const Blob &b = blobs[i];
			run.push_back({b.id, b.type, b.bytes[5], b.rawLength, b.bytes});
			size += b.bytes.size();
		}
		VS_TRY(pack_->appendMany(run));
		if (pack_->size() >= kPackTargetSize)
			VS_TRY(handOff());
	}
	return {};
}

Result<void> ChunkWriter::handOff()
{
	std::unique_lock lock(mutex_);
	// The previous pack must be durable first: this is the backpressure
	// that keeps a slow disk from collecting packs.
	stateCv_.wait(lock, [&] { return !finishing_ || stopping_ || error_; });
	if (error_)
		return errorLocked();
	if (stopping_)
		return {};
	finishing_.emplace(std::move(*pack_));
	pack_.reset();
	finisherCv_.notify_one();
	return {};
}

void ChunkWriter::finisherLoop()
{
	std::unique_lock lock(mutex_);
	for (;;) {
		// A pack handed over is finished even when the writer is going
		// away: it is complete, and gc knows what to do with it.
		finisherCv_.wait(lock, [&] { return finishing_.has_value() || finisherStopping_; });
		if (!finishing_)
			return;
		lock.unlock();
		auto index = finishing_->finish(store_.domain());
		if (index) {
			std::unique_lock storeLock(store_.mutex_);
			store_.addPackLocked(*index);
		}
		lock.lock();
		if (index) {
			// In the store's map now: found there from here on.
			for (const PackEntry &e : index->entries)
				pending_.erase(e.id);
		} else {
			failLocked(index.error());
		}
		// Reset only now: an empty slot is what tells waiters the pack is
		// durable and visible.
		finishing_.reset();
		stateCv_.notify_all();
	}
}

ChunkWriter::~ChunkWriter()
{
	{
		std::lock_guard lock(mutex_);
		stopping_ = true;
		appenderCv_.notify_all();
		stateCv_.notify_all();
	}
	if (appender_.joinable())
		appender_.join();
	{
		std::lock_guard lock(mutex_);
		finisherStopping_ = true;
		finisherCv_.notify_all();
	}
	if (finisher_.joinable())
		finisher_.join();
}

Result<void> ChunkWriter::commit()
{
	std::unique_lock lock(mutex_);
	if (!appender_.joinable())
		return error_ ? errorLocked() : Result<void>{};
	flushRequested_ = true;
	appenderCv_.notify_one();
	stateCv_.wait(lock, [&] { return (!flushRequested_ && !finishing_) || (error_ && !finishing_); });
	if (error_)
		return errorLocked();
	pending_.clear();
	return {};
}

} // namespace virtsnap::store
