#include "restore.h"

#include <unistd.h>

#include "core/acting_as.h"
#include "core/ids.h"
#include "image_product_codes.h"
#include "qcow2_image_writer.h"
#include "store/snapshot_index.h"
#include "volume_writer.h"

namespace virtsnap::engine {

namespace {

// The volume's bytes into a raw file of its size (sparse where the
// snapshot holds nothing).
Result<void> writeRaw(store::Store &store, const store::Manifest &m, int fd, const ProgressFn &progress)
{
	VS_ASSIGN(auto codec, store.codecOf(m));
	VS_ASSIGN(auto index, store::SnapshotIndex::load(store, *codec, m));
	if (::ftruncate(fd, off_t(m.volumeSize)) != 0)
		return failErrno("size the new volume", errno);
	return writeVolume(store, index, fd, progress);
}

// A snapshot of an encrypted volume restores only into an encrypted one.
Result<void> checkEncryption(const store::Manifest &m, const RestoreRequest &request)
{
	if (m.encrypted && !request.luks)
		return fail(errc::kInvalidParameterValue,
			    "snapshot " + m.snapshotId + " is of an encrypted volume and restores only into an encrypted "
			    "one: give --encryption-secret-file FILE (the new volume's LUKS passphrase, mode 0600)");
	if (request.luks && request.format != "qcow2")
		return fail(errc::kInvalidParameterValue,
			    "an encrypted volume is written as a LUKS qcow2, not as " + request.format);
	return {};
}

// Through qemu-nbd into a qcow2 it serves (qcow2_image_writer.h): no raw
// image of the volume's size on the way (ext4 holds none past 16 TiB), and
// with LUKS no plaintext on disk, not even in a temporary file.
Result<void> writeQcow2(store::Store &store, const store::Manifest &m, int fd, const RestoreRequest &request)
{
	VS_ASSIGN(auto codec, store.codecOf(m));
	VS_ASSIGN(auto index, store::SnapshotIndex::load(store, *codec, m));
	VS_ASSIGN(auto image, Qcow2ImageWriter::create(fd, m.volumeSize, request.luks ? &*request.luks : nullptr,
						       request.target.string(), request.answerTimeout));
	VS_TRY(writeVolume(
		store, index,
		[&](std::span<const uint8_t> data, uint64_t offset) { return image->write(data, offset); },
		request.progress));
	return image->finish();
}

// Created as `writeAs`, so that it is theirs and only where they may
// write. (Dropped, a temp file is unlinked as ourselves: unlink never
// follows a symlink, and a random name of ours is nothing to aim with.)
Result<TempFile> createAs(const std::string &writeAs, const fs::path &path, mode_t mode)
{
	VS_ASSIGN(ActingAs asCaller, ActingAs::caller(writeAs));
	auto file = TempFile::create(path, mode);
	if (!file && file.error().code == errc::kAccessDenied)
		return fail(errc::kAccessDenied, "no permission to create " + path.string() +
							 (writeAs.empty() ? "" : " (as uid " + writeAs + ")"));
	return file;
}

} // namespace

Result<WrittenVolume> writeVolumeFile(store::Store &store, const RestoreRequest &request)
{
	const std::string &snapshotId = request.snapshotId;
	VS_TRY(checkSnapshotId(snapshotId));
	if (request.format != "qcow2" && request.format != "raw")
		return fail(errc::kInvalidParameterValue,
			    "format '" + request.format + "' is not supported (use qcow2 or raw)");
	// gc must not remove what the restore is about to read.
	VS_ASSIGN(auto lease, store.lease(store::Lease::Kind::Shared, "restore of " + snapshotId));
	VS_ASSIGN(store::Manifest m, store.getManifest(snapshotId));
	VS_TRY(checkEncryption(m, request));
	VS_ASSIGN(TempFile out, createAs(request.writeAs, request.target, request.luks ? 0600 : 0644));
	if (request.format == "raw")
		VS_TRY(writeRaw(store, m, out.fd(), request.progress));
	else
		VS_TRY(writeQcow2(store, m, out.fd(), request));
	// Through the descriptor we wrote: the name is in the caller's directory.
	markRestoredImage(out.fd(), request.target, m.productCodes, request.warn);
	return WrittenVolume{std::move(out), std::move(m)};
}

Result<store::Manifest> createVolume(store::Store &store, const RestoreRequest &request)
{
	std::error_code ec;
	{
		VS_ASSIGN(ActingAs asCaller, ActingAs::caller(request.writeAs));
		if (fs::exists(request.target, ec))
			return fail(errc::kTargetExists,
				    request.target.string() + " already exists; restore never overwrites");
		fs::path dir = request.target.parent_path().empty() ? fs::path(".") : request.target.parent_path();
		if (!fs::is_directory(dir, ec))
			return fail(errc::kInvalidParameterValue, "directory " + dir.string() + " does not exist");
	}
	VS_ASSIGN(WrittenVolume written, writeVolumeFile(store, request));
	VS_ASSIGN(ActingAs asCaller, ActingAs::caller(request.writeAs));
	VS_TRY(written.file.commit(false));
	return std::move(written.manifest);
}

} // namespace virtsnap::engine
