#include "snapshot_export.h"

#include <algorithm>
#include <cstring>

#include "core/file_util.h"
#include "store/export_records.h"

namespace virtsnap::nbd {

namespace {

Result<std::unique_ptr<store::Store>> openStore(const ExportSettings &settings)
{
	store::BackendSettings backend;
	backend.s3CredentialsFile = settings.s3CredentialsFile;
	backend.timeout = settings.timeout;
	VS_ASSIGN(auto b, store::openBackend(settings.storeUrl, backend));
	return store::Store::open(std::move(b), settings.keyFile);
}

} // namespace

Result<std::unique_ptr<SnapshotExport>> SnapshotExport::open(const ExportSettings &settings)
{
	VS_ASSIGN(auto store, openStore(settings));
	VS_ASSIGN(store::Manifest m, store->getManifest(settings.snapshotId));
	VS_ASSIGN(auto codec, store->codecOf(m));
	VS_ASSIGN(auto index, store::SnapshotIndex::load(*store, *codec, m));
	std::unique_ptr<SnapshotExport> e(new SnapshotExport(settings, std::move(index)));
	e->store_ = std::move(store);
	return e;
}

SnapshotExport::~SnapshotExport()
{
	stopRenewing();
}

void SnapshotExport::closeStore()
{
	stopRenewing();
	store_.reset();
}

Result<void> SnapshotExport::reopenStore()
{
	VS_ASSIGN(store_, openStore(settings_));
	if (!settings_.exportId.empty()) {
		std::lock_guard lock(mutex_);
		stopping_ = false;
		renewer_ = std::thread([this] { renewLoop(); });
	}
	return {};
}

void SnapshotExport::stopRenewing()
{
	{
		std::lock_guard lock(mutex_);
		stopping_ = true;
	}
	stop_.notify_all();
	if (renewer_.joinable())
		renewer_.join();
}

void SnapshotExport::renewLoop()
{
	// serve-snapshot wrote the record just before starting us.
	auto renewedAt = std::chrono::steady_clock::now();
	const auto margin = std::chrono::seconds(store::kExportHoldSeconds - 2 * store::kExportRenewSeconds);
	std::unique_lock lock(mutex_);
	for (;;) {
		if (stop_.wait_for(lock, std::chrono::seconds(store::kExportRenewSeconds), [this] { return stopping_; }))
			return;
		lock.unlock();
		auto renewed = store::renewExportRecord(*store_, settings_.exportId);
		lock.lock();
		if (renewed && *renewed) {
			renewedAt = std::chrono::steady_clock::now();
			continue;
		}
		// Gone (stop-serving, or gc on any host after it expired), or
		// failing until the hold would end unseen: nothing keeps the
		// chunks then. A failure before that is tried again.
		if (renewed || std::chrono::steady_clock::now() - renewedAt > margin) {
			if (settings_.onHoldLost)
				settings_.onHoldLost();
			return;
		}
	}
}

Result<std::shared_ptr<const Bytes>> SnapshotExport::chunk(uint64_t slot)
{
	const store::ChunkId &id = index_.at(slot);
	if (auto cached = cache_.find(id))
		return cached;
	// A codec holds buffers: one per nbdkit thread.
	thread_local std::unique_ptr<store::ChunkCodec> codec;
	if (!codec) {
		// One export per nbdkit: one snapshot, so one key domain.
		VS_ASSIGN(codec, store_->newCodec(index_.domain()));
	}
	VS_ASSIGN(Bytes plain, store_->readChunk(*codec, id));
	bytesFromStore_ += plain.size();
	auto shared = std::make_shared<const Bytes>(std::move(plain));
	cache_.insert(id, shared);
	return shared;
}

Result<void> SnapshotExport::read(uint64_t offset, std::span<uint8_t> out)
{
	const uint64_t chunkSize = index_.chunkSize();
	size_t done = 0;
	while (done < out.size()) {
		uint64_t at = offset + done;
		uint64_t slot = at / chunkSize;
		uint64_t within = at % chunkSize;
		size_t n = size_t(std::min<uint64_t>(out.size() - done, index_.slotLength(slot) - within));
		if (store::isZeroId(index_.at(slot))) {
			std::memset(out.data() + done, 0, n);
		} else {
			VS_ASSIGN(auto data, chunk(slot));
			if (data->size() < within + n)
				return fail(errc::kCorrupt, "chunk of slot " + std::to_string(slot) + " is short");
			std::memcpy(out.data() + done, data->data() + within, n);
		}
		done += n;
	}
	bytesServed_ += out.size();
	return {};
}

void SnapshotExport::writeStats() const
{
	if (settings_.statsFile.empty())
		return;
	std::string text = "{\"BytesServed\": " + std::to_string(bytesServed_.load()) +
			   ", \"BytesFromStore\": " + std::to_string(bytesFromStore_.load()) + "}\n";
	(void)writeFileAtomic(settings_.statsFile, Bytes(text.begin(), text.end()));
}

void SnapshotExport::extents(uint64_t offset, uint64_t length, const ExtentFn &extent) const
{
	const uint64_t chunkSize = index_.chunkSize();
	const uint64_t end = std::min(offset + length, size());
	uint64_t runStart = offset;
	bool runZero = false;
	for (uint64_t at = offset; at < end;) {
		uint64_t slot = at / chunkSize;
		uint64_t next = std::min(end, slot * chunkSize + index_.slotLength(slot));
		bool zero = store::isZeroId(index_.at(slot));
		if (at == offset)
			runZero = zero;
		else if (zero != runZero) {
			if (!extent(runStart, at - runStart, runZero))
				return;
			runStart = at;
			runZero = zero;
		}
		at = next;
	}
	if (end > runStart)
		extent(runStart, end - runStart, runZero);
}

} // namespace virtsnap::nbd
