#include "restore.h"

#include <unistd.h>

#include "core/file_util.h"
#include "core/ids.h"
#include "core/process.h"
#include "store/snapshot_index.h"
#include "volume_writer.h"

namespace virtsnap::engine {

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

	auto m = store.getManifest(request.snapshotId);
	if (!m)
		return std::unexpected(m.error());
	auto codec = store.newCodec();
	auto index = store::SnapshotIndex::load(store, *codec, *m);
	if (!index)
		return std::unexpected(index.error());

	if (request.format == "raw") {
		auto file = TempFile::create(request.target, 0644);
		if (!file)
			return std::unexpected(file.error());
		if (::ftruncate(file->fd(), off_t(m->volumeSize)) != 0)
			return failErrno("size " + file->tempPath().string(), errno);
		VS_TRY(writeVolume(store, *index, file->fd(), request.progress));
		VS_TRY(file->commit(false));
		return m;
	}

	// qcow2: the raw image is written first, then converted into an image
	// created beforehand, so the file we fsync is the one qemu-img wrote.
	auto raw = TempFile::create(request.target.string() + ".raw", 0600);
	if (!raw)
		return std::unexpected(raw.error());
	if (::ftruncate(raw->fd(), off_t(m->volumeSize)) != 0)
		return failErrno("size " + raw->tempPath().string(), errno);
	VS_TRY(writeVolume(store, *index, raw->fd(), request.progress));
	auto out = TempFile::create(request.target, 0644);
	if (!out)
		return std::unexpected(out.error());
	auto made = runProgram({"qemu-img", "create", "-q", "-f", "qcow2", out->tempPath().string(),
				std::to_string(m->volumeSize)});
	if (made)
		made = runProgram({"qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2",
				   raw->tempPath().string(), out->tempPath().string()});
	if (!made)
		return std::unexpected(made.error());
	VS_TRY(out->commit(false));
	return m;
}

} // namespace virtsnap::engine
