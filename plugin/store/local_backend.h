// The store in a directory: today's layout, object names as relative
// paths. Writes go to a temporary name beside the target, are fsynced and
// renamed into place, and the directory is fsynced; create() links instead
// of renaming, so it fails when the name is taken. The first write into a
// directory also syncs the entries that lead to it from the store's.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <unordered_set>

#include "backend.h"

namespace virtsnap::store {

class LocalBackend : public Backend
{
public:
	explicit LocalBackend(std::filesystem::path dir) : dir_(std::move(dir)) {}

	const std::filesystem::path &dir() const { return dir_; }

	std::string describe() const override { return dir_.string(); }
	bool local() const override { return true; }
	Result<void> put(const std::string &name, std::span<const uint8_t> data) override;
	Result<void> create(const std::string &name, std::span<const uint8_t> data) override;
	Result<std::unique_ptr<ObjectWriter>> openWriter(const std::string &name) override;
	Result<Bytes> get(const std::string &name) override;
	Result<void> getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out) override;
	Result<ObjectInfo> stat(const std::string &name) override;
	Result<void> list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit) override;
	Result<void> remove(const std::string &name) override;
	Result<std::chrono::system_clock::time_point> now() override;
	Result<Swept> sweepPartial(std::chrono::seconds grace, bool dryRun) override;

private:
	Result<std::filesystem::path> pathOf(const std::string &name) const;
	Result<void> write(const std::string &name, std::span<const uint8_t> data, bool overwrite);
	// Makes `dir` and, once per directory, the entries that lead to it
	// durable: makeDirs syncs the entry of each directory it makes, but
	// one it finds may have been made by a process that died before that
	// sync, and a power loss would then take with it an object whose
	// put() had returned.
	Result<void> prepareDir(const std::filesystem::path &dir);

	std::filesystem::path dir_;
	std::mutex mutex_;
	std::unordered_set<std::string> durableDirs_;
};

} // namespace virtsnap::store
