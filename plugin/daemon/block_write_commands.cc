// start-snapshot, put-snapshot-block, complete-snapshot and import-image:
// the write side of the EBS direct APIs (engine/block_writes.h). The
// engine keeps a snapshot being written in the state directory; the
// catalog's row mirrors it, so describe-snapshots shows it pending, then
// completed or in error.

#include <fcntl.h>
#include <sys/stat.h>

#include <unistd.h>

#include "access.h"
#include "catalog/catalog.h"
#include "catalog_rows.h"
#include "core/acting_as.h"
#include "core/file_util.h"
#include "core/ids.h"
#include "core/unique_fd.h"
#include "ec2_output.h"
#include "engine/image_import.h"
#include "engine/kms_keys.h"
#include "engine/maintenance.h"
#include "engine/resources.h"
#include "handlers.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

engine::BlockWrites writesOf(Context &ctx)
{
	return engine::BlockWrites(ctx.location.stateDir);
}

catalog::SnapshotRow pendingRow(const engine::BlockWrite &w)
{
	catalog::SnapshotRow r;
	r.snapshotId = w.snapshotId;
	r.volumeId = engine::kDirectVolumeId;
	r.state = SnapshotState::Pending;
	r.startTime = w.startTime;
	r.description = w.description;
	r.ownerId = w.accountId;
	r.encrypted = w.encrypted; // its parent's; without one, outside data: as a plain volume's
	r.kmsKeyId = w.kmsKeyId;
	r.volumeSize = w.volumeSize;
	r.parentSnapshotId = w.parentSnapshotId;
	r.captureMode = "direct";
	r.tags = w.tags;
	return r;
}

// Blocks go only into a snapshot start-snapshot made and that is pending:
// one the catalog knows in another state is refused here, one it does not
// know the engine looks for. Another account's does not exist for the
// caller; within the account, only whoever started it (or root) writes
// into it or completes it: another user's blocks would be in their snapshot.
Result<void> checkWritable(Context &ctx, const std::string &id, const Call &call)
{
	VS_ASSIGN(auto row, ctx.catalog->getSnapshot(id));
	if (row && ownerOf(ctx, *row) != call.accountId)
		return fail(errc::kSnapshotNotFound, "snapshot " + id + " does not exist");
	if (row && row->state != SnapshotState::Pending)
		return fail(errc::kIncorrectState, "snapshot " + id + " is " + name(row->state) +
							   (row->stateMessage.empty() ? "" : " (" + row->stateMessage + ")") +
							   ", not pending");
	VS_ASSIGN(auto write, writesOf(ctx).find(id));
	if (write && call.uid != "0" && write->ownerId != call.uid)
		return fail(errc::kAccessDenied,
			    "snapshot " + id + " was started by uid " + write->ownerId + ": only they or root may write it");
	return {};
}

// The row a block write ended with: completed from its manifest, or in
// error. A delete asked while it was pending takes effect now, as for a
// capture (snapshot_job.cc).
Result<catalog::SnapshotRow> settleRow(Context &ctx, const engine::CompleteOutcome &o, const std::string &id,
				       const std::string &message)
{
	catalog::SnapshotRow out;
	VS_TRY(ctx.catalog->transaction([&]() -> Result<void> {
		VS_ASSIGN(auto before, ctx.catalog->getSnapshot(id));
		if (o.state == SnapshotState::Completed) {
			store::Manifest m = o.manifest;
			// Tags given while it was pending live in its row only: the
			// manifest takes them now, in this transaction, as a
			// capture's does (CreateJob::adoptPendingTags).
			if (before && before->tags != m.tags) {
				VS_TRY(engine::replaceTags(*ctx.store, m.snapshotId, before->tags));
				m.tags = before->tags;
			}
			out = snapshotRow(m, SnapshotState::Completed);
		} else {
			if (!before)
				return {};
			out = *before;
			out.state = SnapshotState::Error;
			out.stateMessage = message;
		}
		if (before && before->deleteRequested) {
			if (o.state == SnapshotState::Completed)
				(void)engine::deleteSnapshot(*ctx.store, id); // gone either way
			return ctx.catalog->removeSnapshot(id);
		}
		return ctx.catalog->putSnapshot(out);
	}));
	return out;
}

// After a refused put or complete: the engine may have ended the snapshot
// (its timeout passed); the catalog says so too.
void mirrorError(Context &ctx, engine::BlockWrites &writes, const std::string &id)
{
	auto w = writes.find(id);
	if (w && *w && (*w)->state == SnapshotState::Error)
		(void)settleRow(ctx, {SnapshotState::Error, (*w)->stateMessage, {}}, id, (*w)->stateMessage);
}

// The block, read as the caller.
Result<Bytes> readBlockFile(const PutBlockRequest &req, const std::string &ownerId)
{
	VS_ASSIGN(UniqueFd fd, openAsCaller("--block-data", req.blockData, ownerId));
	struct stat st;
	if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
		return fail(errc::kInvalidParameterValue, "--block-data " + req.blockData + " is not a file");
	if (uint64_t(st.st_size) != req.dataLength)
		return fail(errc::kInvalidParameterValue, "--block-data " + req.blockData + " has " +
								  std::to_string(st.st_size) + " bytes, --data-length says " +
								  std::to_string(req.dataLength));
	Bytes data(req.dataLength);
	VS_TRY(preadAll(fd.get(), data, 0));
	return data;
}

// A retried start-snapshot with the same client token gets the same
// snapshot, as it is now; the token with other options is an error.
Result<std::optional<Reply>> replayStart(Context &ctx, const StartSnapshotRequest &req)
{
	VS_ASSIGN(auto seen, earlierRequest(ctx, req.clientToken, req.requestHash));
	if (!seen)
		return std::nullopt;
	VS_ASSIGN(auto row, ctx.catalog->getSnapshot(seen->response));
	if (!row)
		return fail(errc::kSnapshotNotFound, "snapshot " + seen->response + " of client token '" + req.clientToken +
							     "' no longer exists");
	return ok(startedSnapshotJson(*row));
}

Reply outcomeReply(const catalog::SnapshotRow &row, const std::string &id)
{
	Json j = Json::object();
	j.set("SnapshotId", Json::string(id));
	j.set("Status", Json::string(name(row.state)));
	if (!row.stateMessage.empty())
		j.set("StateMessage", Json::string(row.stateMessage));
	Reply reply = ok(j);
	if (row.state == SnapshotState::Error)
		reply.failure = Error{errc::kInvalidParameterValue, "snapshot " + id + " is error: " + row.stateMessage};
	return reply;
}

} // namespace

// A file the caller names, opened as the caller (core/acting_as.h): the
// daemon reads for them only what they could read themselves. Only a
// regular file or a block device: the open does not wait (a FIFO with no
// writer would hold a daemon thread), and what it opened is checked before
// anything is read from it.
Result<UniqueFd> openAsCaller(const std::string &option, const std::string &path, const std::string &ownerId)
{
	UniqueFd fd;
	{
		VS_ASSIGN(ActingAs asCaller, ActingAs::caller(ownerId));
		fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
	}
	if (!fd.isValid() && errno == ENOENT)
		return fail(errc::kInvalidParameterValue, option + " " + path + " does not exist");
	if (!fd.isValid())
		return failErrno(option + " " + path, errno);
	struct stat st;
	if (::fstat(fd.get(), &st) != 0)
		return failErrno(option + " " + path, errno);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return fail(errc::kInvalidParameterValue, option + " " + path + " is not a regular file or a block device");
	const int flags = ::fcntl(fd.get(), F_GETFL);
	if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
		return failErrno(option + " " + path, errno);
	return fd;
}

void expireBlockWrites(Context &ctx)
{
	auto writes = writesOf(ctx);
	auto expired = writes.expire(std::chrono::system_clock::now());
	if (!expired)
		return; // advisory: put and complete check the timeout themselves
	for (const engine::BlockWrite &w : *expired)
		(void)settleRow(ctx, {SnapshotState::Error, w.stateMessage, {}}, w.snapshotId, w.stateMessage);
}

Result<void> forgetBlockWrite(Context &ctx, const std::string &snapshotId)
{
	return writesOf(ctx).forget(snapshotId);
}

Result<std::vector<catalog::SnapshotRow>> blockWriteRows(Context &ctx)
{
	VS_ASSIGN(auto all, writesOf(ctx).list());
	std::vector<catalog::SnapshotRow> rows;
	for (const engine::BlockWrite &w : all) {
		catalog::SnapshotRow r = pendingRow(w);
		r.state = w.state;
		r.stateMessage = w.stateMessage;
		rows.push_back(std::move(r));
	}
	return rows;
}

Result<std::vector<store::ChunkId>> blockWritesPinned(Context &ctx)
{
	return writesOf(ctx).pinnedChunks(ctx.store->chunkSize());
}

Result<Reply> startSnapshot(Context &ctx, const Call &call)
{
	VS_ASSIGN(StartSnapshotRequest req, parseStartSnapshot(call.args));
	req.start.ownerId = call.uid;
	req.start.accountId = call.accountId;
	if (!req.start.parentSnapshotId.empty()) {
		VS_ASSIGN(catalog::SnapshotRow parent, visibleSnapshot(ctx, call, req.start.parentSnapshotId));
		// The child reads the parent's chunks: the parent's key too.
		VS_TRY(requireSnapshotKey(ctx, call, parent));
	} else if (req.start.encrypted) {
		if (req.start.kmsKeyId.empty()) {
			VS_ASSIGN(req.start.kmsKeyId, engine::defaultKmsKey(*ctx.store, call.accountId, ctx.defaultAccount));
		}
		VS_TRY(engine::requireKmsKeyUse(*ctx.store, req.start.kmsKeyId, call.accountId, ctx.defaultAccount));
	}
	VS_ASSIGN(auto replayed, replayStart(ctx, req));
	if (replayed)
		return std::move(*replayed);
	auto writes = writesOf(ctx);
	VS_ASSIGN(engine::BlockWrite w, writes.start(*ctx.store, req.start, std::chrono::system_clock::now()));
	catalog::SnapshotRow row = pendingRow(w);
	VS_TRY(ctx.catalog->transaction([&]() -> Result<void> {
		VS_TRY(ctx.catalog->putSnapshot(row));
		if (!req.clientToken.empty())
			VS_TRY(ctx.catalog->putRequest({req.clientToken, req.requestHash, w.snapshotId, isoTimeNow()}));
		return {};
	}));
	return ok(startedSnapshotJson(row));
}

Result<Reply> putSnapshotBlock(Context &ctx, const Call &call)
{
	VS_ASSIGN(PutBlockRequest req, parsePutBlock(call.args));
	VS_TRY(checkWritable(ctx, req.snapshotId, call));
	VS_ASSIGN(Bytes data, readBlockFile(req, call.uid));
	auto writes = writesOf(ctx);
	auto put = writes.put(*ctx.store, req.snapshotId, req.block, data, req.checksum, std::chrono::system_clock::now());
	if (!put) {
		mirrorError(ctx, writes, req.snapshotId);
		return std::unexpected(put.error());
	}
	Json j = Json::object();
	j.set("Checksum", Json::string(req.checksum));
	j.set("ChecksumAlgorithm", Json::string("SHA256"));
	return ok(j);
}

Result<Reply> completeSnapshot(Context &ctx, const Call &call)
{
	VS_ASSIGN(CompleteRequest req, parseComplete(call.args));
	VS_TRY(checkWritable(ctx, req.snapshotId, call));
	auto writes = writesOf(ctx);
	auto outcome = writes.complete(*ctx.store, req.snapshotId, req.changedBlocks, req.checksum,
				       std::chrono::system_clock::now());
	if (!outcome) {
		mirrorError(ctx, writes, req.snapshotId);
		return std::unexpected(outcome.error());
	}
	VS_ASSIGN(catalog::SnapshotRow row, settleRow(ctx, *outcome, req.snapshotId, outcome->stateMessage));
	return outcomeReply(row, req.snapshotId);
}

Result<Reply> importImage(Context &ctx, const Call &call)
{
	VS_ASSIGN(ImportImageRequest req, parseImportImage(call.args));
	req.start.ownerId = call.uid;
	req.start.accountId = call.accountId;
	VS_ASSIGN(UniqueFd fd, openAsCaller("--file", req.file, call.uid));
	engine::ImportRequest ir{fd.get(), req.format, req.start, call.progress, nullptr, "", ctx.options.hypervisorTimeout};
	if (::geteuid() == 0 && call.uid != "0")
		ir.qcow2Refused = "import-image of a qcow2 through virtsnapd is for root (qemu-nbd would open what its "
				  "header names as root); convert it to raw (qemu-img convert -O raw) or run virtsnap "
				  "as yourself without the daemon";
	std::string started;
	ir.started = [&](const engine::BlockWrite &w) {
		started = w.snapshotId;
		return ctx.catalog->putSnapshot(pendingRow(w));
	};
	auto writes = writesOf(ctx);
	auto imported = engine::importImage(*ctx.store, writes, ir);
	if (!imported) {
		if (!started.empty())
			mirrorError(ctx, writes, started); // the engine ended it in error
		return std::unexpected(imported.error());
	}
	const std::string &id = imported->write.snapshotId;
	VS_ASSIGN(catalog::SnapshotRow row, settleRow(ctx, imported->outcome, id, imported->outcome.stateMessage));
	Reply reply = outcomeReply(row, id);
	reply.doc = snapshotJson(row);
	return reply;
}

} // namespace virtsnap::daemon
