// One completed snapshot as a read-only disk, for the nbdkit plugin: reads
// assembled from the snapshot index's chunks (decoded ones cached), the
// zero chunks reported as holes, and the export's record in the store
// (store/export_records.h) renewed while it serves.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "chunk_cache.h"
#include "store/snapshot_index.h"
#include "store/store.h"

namespace virtsnap::nbd {

struct ExportSettings {
	std::string storeUrl;
	std::string keyFile;
	std::string s3CredentialsFile;
	std::chrono::seconds timeout{30};
	std::string snapshotId;
	std::string exportId; // the record to renew; empty: none
	size_t cacheBytes = 64 << 20;
	// Where the export's read counts go when nbdkit stops (an instant
	// restore reports them); empty: nowhere.
	std::string statsFile;
	// Called once the record is gone (stop-serving, gc after it expired)
	// or could not be renewed for so long that its hold nears its end:
	// past that, nothing keeps the snapshot's chunks, so serving must stop.
	std::function<void()> onHoldLost;
};

class SnapshotExport
{
public:
	// Opens the store and loads the snapshot's index: a wrong key, an
	// unknown snapshot or an unreachable store fails here, before nbdkit
	// serves anything.
	static Result<std::unique_ptr<SnapshotExport>> open(const ExportSettings &settings);
	~SnapshotExport();

	uint64_t size() const { return index_.volumeSize(); }

	// nbdkit forks into the background after open(): a store whose client
	// runs threads (RADOS) is closed before and opened again after, in the
	// child, which also starts renewing the record.
	void closeStore();
	Result<void> reopenStore();

	Result<void> read(uint64_t offset, std::span<uint8_t> out);
	// Calls `extent` for runs of [offset, offset + length) that hold data
	// (zero false) or read as zeros (true), merged, in order; stops early
	// when it returns false.
	using ExtentFn = std::function<bool(uint64_t offset, uint64_t length, bool zero)>;
	void extents(uint64_t offset, uint64_t length, const ExtentFn &extent) const;

	// {"BytesServed", "BytesFromStore"} into settings.statsFile, replaced
	// whole: what clients read, and the chunk bytes that had to come from
	// the store for it (the rest were holes or in the cache).
	void writeStats() const;

private:
	explicit SnapshotExport(const ExportSettings &settings, store::SnapshotIndex index)
		: settings_(settings), index_(std::move(index)), cache_(settings.cacheBytes)
	{
	}
	Result<std::shared_ptr<const Bytes>> chunk(uint64_t slot);
	void renewLoop();
	void stopRenewing();

	const ExportSettings settings_;
	std::unique_ptr<store::Store> store_;
	store::SnapshotIndex index_;
	ChunkCache cache_;

	std::mutex mutex_;
	std::condition_variable stop_;
	bool stopping_ = false;
	std::thread renewer_;

	std::atomic<uint64_t> bytesServed_{0};
	std::atomic<uint64_t> bytesFromStore_{0};
};

} // namespace virtsnap::nbd
