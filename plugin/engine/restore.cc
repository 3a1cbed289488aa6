#include "restore.h"

#include <unistd.h>

#include "core/ids.h"
#include "core/process.h"
#include "store/snapshot_index.h"
#include "volume_writer.h"

namespace virtsnap::engine {

namespace {

// The volume's bytes into a raw file of its size (sparse where the
// snapshot holds nothing).
Result<TempFile> writeRaw(store::Store &store, const store::Manifest &m, const fs::path &path, mode_t mode,
			  const ProgressFn &progress)
{
	auto codec = store.newCodec();
	VS_ASSIGN(auto index, store::SnapshotIndex::load(store, *codec, m));
	VS_ASSIGN(TempFile file, TempFile::create(path, mode));
	if (::ftruncate(file.fd(), off_t(m.volumeSize)) != 0)
		return failErrno("size " + file.tempPath().string(), errno);
	VS_TRY(writeVolume(store, index, file.fd(), progress));
	return file;
}

} // namespace

Result<WrittenVolume> writeVolumeFile(store::Store &store, const std::string &snapshotId, const fs::path &finalPath,
				      const std::string &format, const ProgressFn &progress)
{
	VS_TRY(checkSnapshotId(snapshotId));
	if (format != "qcow2" && format != "raw")
		return fail(errc::kInvalidParameterValue, "format '" + format + "' is not supported (use qcow2 or raw)");
	// gc must not remove what the restore is about to read.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "restore of " + snapshotId));
	VS_ASSIGN(store::Manifest m, store.getManifest(snapshotId));
	if (format == "raw") {
		VS_ASSIGN(TempFile file, writeRaw(store, m, finalPath, 0644, progress));
		return WrittenVolume{std::move(file), std::move(m)};
	}

	// qcow2: the raw image is written first, then converted into an image
	// created beforehand, so the file we fsync is the one qemu-img wrote.
	VS_ASSIGN(TempFile raw, writeRaw(store, m, finalPath.string() + ".raw", 0600, progress));
	VS_ASSIGN(TempFile out, TempFile::create(finalPath, 0644));
	VS_TRY(runProgram({"qemu-img", "create", "-q", "-f", "qcow2", out.tempPath().string(),
			   std::to_string(m.volumeSize)}));
	VS_TRY(runProgram({"qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", raw.tempPath().string(),
			   out.tempPath().string()}));
	return WrittenVolume{std::move(out), std::move(m)};
}

Result<store::Manifest> createVolume(store::Store &store, const RestoreRequest &request)
{
	VS_TRY(checkSnapshotId(request.snapshotId));
	if (request.format != "qcow2" && request.format != "raw")
		return fail(errc::kInvalidParameterValue,
			    "format '" + request.format + "' is not supported (use qcow2 or raw)");
	std::error_code ec;
	if (fs::exists(request.target, ec))
		return fail(errc::kTargetExists, request.target.string() + " already exists; restore never overwrites");
	fs::path dir = request.target.parent_path().empty() ? fs::path(".") : request.target.parent_path();
	if (!fs::is_directory(dir, ec))
		return fail(errc::kInvalidParameterValue, "directory " + dir.string() + " does not exist");
	VS_ASSIGN(WrittenVolume written,
		  writeVolumeFile(store, request.snapshotId, request.target, request.format, request.progress));
	VS_TRY(written.file.commit(false));
	return std::move(written.manifest);
}

} // namespace virtsnap::engine
