#include "rados_backend.h"

#include <rados/librados.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <mutex>
#include <system_error>
#include <vector>

#include "core/bytes.h"
#include "crypto/crypto.h"

namespace virtsnap::store {

namespace {

// now() writes an object of this name to learn the clock that object
// mtimes are in; list() never shows one, sweepPartial() removes those an
// interrupted now() left.
constexpr const char *kClockProbe = ".virtsnap-clock-";
// get() reads an object and its size in one operation; if the object is
// larger than this guess, once more with room for all of it.
constexpr size_t kFirstRead = 1u << 20;
// One rados_read() at most: a ranged read of a pack is far smaller.
constexpr size_t kMaxRead = 64u << 20;
// Stats of listed objects in flight at once.
constexpr size_t kStatsInFlight = 64;

std::string errnoText(int negative)
{
	return std::generic_category().message(-negative);
}

const char *codeOf(int negative)
{
	switch (-negative) {
	case ENOENT:
		return errc::kObjectNotFound;
	case EEXIST:
		return errc::kObjectExists;
	case EPERM:
	case EACCES:
		return errc::kAccessDenied;
	case ETIMEDOUT:
	case ENOTCONN:
	case ECONNREFUSED:
	case ESHUTDOWN:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return errc::kStoreUnavailable;
	case ENOSPC:
	case EDQUOT:
		return errc::kNoSpace;
	case EMSGSIZE: // the OSD's answer to a write above osd_max_write_size
	case E2BIG:
	case EFBIG:
		return errc::kInvalidParameterValue;
	default:
		return errc::kIo;
	}
}

struct ClusterDeleter {
	void operator()(rados_t cluster) const { rados_shutdown(cluster); }
};
struct IoctxDeleter {
	void operator()(rados_ioctx_t io) const { rados_ioctx_destroy(io); }
};
struct WriteOpDeleter {
	void operator()(rados_write_op_t op) const { rados_release_write_op(op); }
};
struct ReadOpDeleter {
	void operator()(rados_read_op_t op) const { rados_release_read_op(op); }
};
struct CompletionDeleter {
	void operator()(rados_completion_t c) const { rados_aio_release(c); }
};
using Cluster = std::unique_ptr<std::remove_pointer_t<rados_t>, ClusterDeleter>;
using Ioctx = std::unique_ptr<std::remove_pointer_t<rados_ioctx_t>, IoctxDeleter>;
using WriteOp = std::unique_ptr<std::remove_pointer_t<rados_write_op_t>, WriteOpDeleter>;
using ReadOp = std::unique_ptr<std::remove_pointer_t<rados_read_op_t>, ReadOpDeleter>;
using Completion = std::unique_ptr<std::remove_pointer_t<rados_completion_t>, CompletionDeleter>;

std::chrono::system_clock::time_point timeOf(time_t mtime)
{
	return std::chrono::system_clock::from_time_t(mtime);
}

class RadosBackend;

// The writers' buffers, kept for the next writer. A 32 MiB buffer grown
// afresh for every pack is memory the kernel must fault in page by page
// each time (glibc maps blocks that large anew and unmaps them when
// freed): perf put a sixth of a full snapshot's CPU on RADOS in those
// faults. A snapshot fills one pack while the previous is written, so two
// buffers are enough to keep.
class BufferPool
{
public:
	Bytes take()
	{
		std::lock_guard lock(mutex_);
		if (spare_.empty())
			return {};
		Bytes b = std::move(spare_.back());
		spare_.pop_back();
		return b;
	}

	void giveBack(Bytes b)
	{
		if (b.capacity() == 0)
			return;
		b.clear(); // keeps the capacity, and with it the pages
		std::lock_guard lock(mutex_);
		if (spare_.size() < kKeep)
			spare_.push_back(std::move(b));
	}

private:
	static constexpr size_t kKeep = 2;
	std::mutex mutex_;
	std::vector<Bytes> spare_;
};

// Buffers the object and writes it in one operation at commit(): a pack
// (32 MiB) is well under osd_max_write_size (90 MB), and one write_full is
// atomic where a series of writes would show a part.
class RadosWriter : public ObjectWriter
{
public:
	RadosWriter(Backend &backend, std::shared_ptr<BufferPool> pool, std::string name)
		: backend_(backend), pool_(std::move(pool)), name_(std::move(name)), data_(pool_->take())
	{
	}

	~RadosWriter() override { pool_->giveBack(std::move(data_)); }

	Result<void> append(std::span<const uint8_t> data) override
	{
		data_.insert(data_.end(), data.begin(), data.end());
		return {};
	}

	Result<void> commit() override
	{
		VS_TRY(backend_.put(name_, data_));
		pool_->giveBack(std::move(data_));
		data_ = Bytes();
		return {};
	}

	uint64_t size() const override { return data_.size(); }

private:
	Backend &backend_;
	// Shared: a writer may outlive the backend's other users, never the pool.
	std::shared_ptr<BufferPool> pool_;
	const std::string name_;
	Bytes data_;
};

// librados' cluster handle and I/O context are safe to share between
// threads for I/O; nothing here changes them after open.
class RadosBackend : public Backend
{
public:
	static Result<std::unique_ptr<Backend>> open(const StoreUrl &url, const BackendSettings &settings);

	std::string describe() const override { return where_; }
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
	RadosBackend(const StoreUrl &url, const BackendSettings &settings);
	Result<void> connect();
	Result<void> openPool();
	Result<void> write(const std::string &name, std::span<const uint8_t> data, bool exclusive);
	Result<std::vector<std::string>> names(const std::string &prefix);
	Result<void> statAll(const std::vector<std::string> &names, std::vector<ObjectInfo> *out);
	std::unexpected<Error> failed(const std::string &what, int negative) const;
	// An open that failed: the whole URL, conf and id included, is named.
	std::unexpected<Error> openFailed(const char *code, const std::string &why) const
	{
		return fail(code, "store " + url_.text + ": " + why);
	}

	const StoreUrl url_;
	const std::string where_; // rados://POOL[/NS]
	const std::chrono::seconds timeout_;
	Cluster cluster_;
	Ioctx io_;
	std::shared_ptr<BufferPool> buffers_ = std::make_shared<BufferPool>();
};

RadosBackend::RadosBackend(const StoreUrl &url, const BackendSettings &settings)
	: url_(url),
	  where_("rados://" + url.pool + (url.radosNamespace.empty() ? "" : "/" + url.radosNamespace)),
	  timeout_(settings.timeout)
{
}

std::unexpected<Error> RadosBackend::failed(const std::string &what, int negative) const
{
	std::string why = errnoText(negative);
	if (negative == -ETIMEDOUT)
		why += " (no answer within " + std::to_string(timeout_.count()) + " s)";
	else if (negative == -EPERM || negative == -EACCES)
		why += " (client." + url_.id + " lacks the caps for pool " + url_.pool + ")";
	else if (negative == -EMSGSIZE || negative == -E2BIG || negative == -EFBIG)
		why += " (larger than the cluster's osd_max_write_size allows in one write)";
	return fail(codeOf(negative), where_ + ": " + what + ": " + why);
}

Result<std::unique_ptr<Backend>> RadosBackend::open(const StoreUrl &url, const BackendSettings &settings)
{
	std::unique_ptr<RadosBackend> backend(new RadosBackend(url, settings));
	VS_TRY(backend->connect());
	VS_TRY(backend->openPool());
	return std::unique_ptr<Backend>(std::move(backend));
}

Result<void> RadosBackend::connect()
{
	const std::string &conf = url_.conf;
	// librados' own message for a missing file is "No such file or
	// directory" without the name; say which and where it came from.
	if (::access(conf.c_str(), R_OK) != 0) {
		if (errno == ENOENT)
			return openFailed(errc::kInvalidParameterValue,
					  "the Ceph config file " + conf + " does not exist (conf= in the URL)");
		return openFailed(errno == EACCES ? errc::kAccessDenied : errc::kIo,
			   "cannot read the Ceph config file " + conf + ": " + errnoText(-errno));
	}
	rados_t handle = nullptr;
	if (int r = rados_create2(&handle, "ceph", ("client." + url_.id).c_str(), 0); r < 0)
		return openFailed(errc::kInvalidParameterValue,
				  "cannot make a client named client." + url_.id + ": " + errnoText(r));
	cluster_.reset(handle);
	// Keys come from the keyring this file names, and from nowhere else
	// (not $CEPH_ARGS: nothing is read from the environment).
	if (int r = rados_conf_read_file(handle, conf.c_str()); r < 0)
		return openFailed(errc::kInvalidParameterValue,
				  "cannot read the Ceph config file " + conf + ": " + errnoText(r));
	// Set over the file's values: the caller's bound on every request, and
	// one line of ours instead of librados' own on stderr.
	std::string seconds = std::to_string(std::max<int64_t>(1, timeout_.count()));
	for (auto [key, value] : {std::pair<const char *, std::string>{"client_mount_timeout", seconds},
				  {"rados_mon_op_timeout", seconds},
				  {"rados_osd_op_timeout", seconds},
				  {"log_to_stderr", "false"},
				  {"err_to_stderr", "false"}})
		if (int r = rados_conf_set(handle, key, value.c_str()); r < 0)
			return openFailed(errc::kInternal, std::string("cannot set ") + key + ": " + errnoText(r));
	char monHost[1024] = {};
	(void)rados_conf_get(handle, "mon_host", monHost, sizeof(monHost) - 1); // for messages only
	int r = rados_connect(handle);
	if (r == 0)
		return {};
	std::string mons = monHost[0] ? std::string(" (mon host ") + monHost + ")" : "";
	if (r == -ETIMEDOUT)
		return openFailed(errc::kStoreUnavailable,
				  "no monitor of the cluster" + mons + " answered within " + seconds + " s");
	if (r == -ENOENT && !monHost[0])
		return openFailed(errc::kInvalidParameterValue, conf + " names no monitors (mon host)");
	if (r == -ENOENT) // no keyring, or no key for the id in it
		return openFailed(errc::kAccessDenied,
				  "no key for client." + url_.id + " in the keyring that " + conf + " names");
	if (r == -EACCES || r == -EPERM)
		return openFailed(errc::kAccessDenied,
				  "the cluster" + mons + " refused client." + url_.id + ": " + errnoText(r));
	return openFailed(errc::kStoreUnavailable, "cannot connect to the cluster" + mons + ": " + errnoText(r));
}

Result<void> RadosBackend::openPool()
{
	rados_ioctx_t io = nullptr;
	int r = rados_ioctx_create(cluster_.get(), url_.pool.c_str(), &io);
	if (r == -ENOENT)
		return openFailed(errc::kStoreUnavailable, "pool " + url_.pool +
								   " does not exist; an administrator creates it with "
								   "'ceph osd pool create " + url_.pool +
								   "' and 'ceph osd pool application enable " +
								   url_.pool + " virtsnap'");
	if (r < 0)
		return openFailed(codeOf(r), "cannot open pool " + url_.pool + ": " + errnoText(r));
	io_.reset(io);
	rados_ioctx_set_namespace(io, url_.radosNamespace.c_str());
	// One request to an OSD now, so that an OSD that does not answer or
	// caps that do not allow reading fail here, named, and not in the
	// middle of a snapshot.
	uint64_t size;
	time_t mtime;
	r = rados_stat(io, ".virtsnap-open-probe", &size, &mtime);
	if (r < 0 && r != -ENOENT)
		return failed("read from pool " + url_.pool, r);
	return {};
}

Result<void> RadosBackend::write(const std::string &name, std::span<const uint8_t> data, bool exclusive)
{
	WriteOp op(rados_create_write_op());
	if (!op)
		return fail(errc::kInternal, where_ + ": no memory for a write of " + name);
	// Create and write in one operation: of racing creators exactly one
	// wins, and no reader sees the object empty in between.
	if (exclusive)
		rados_write_op_create(op.get(), LIBRADOS_CREATE_EXCLUSIVE, nullptr);
	rados_write_op_write_full(op.get(), reinterpret_cast<const char *>(data.data()), data.size());
	// FULL_TRY: a full cluster answers ENOSPC instead of holding the write
	// until the timeout.
	int r = rados_write_op_operate2(op.get(), io_.get(), name.c_str(), nullptr, LIBRADOS_OPERATION_FULL_TRY);
	if (r == -EEXIST && exclusive)
		return fail(errc::kObjectExists, where_ + ": object " + name + " exists");
	if (r < 0)
		return failed("write " + name + " (" + std::to_string(data.size()) + " bytes)", r);
	return {};
}

Result<void> RadosBackend::put(const std::string &name, std::span<const uint8_t> data)
{
	return write(name, data, false);
}

Result<void> RadosBackend::create(const std::string &name, std::span<const uint8_t> data)
{
	return write(name, data, true);
}

Result<std::unique_ptr<ObjectWriter>> RadosBackend::openWriter(const std::string &name)
{
	return std::unique_ptr<ObjectWriter>(std::make_unique<RadosWriter>(*this, buffers_, name));
}

Result<Bytes> RadosBackend::get(const std::string &name)
{
	// The size and the bytes in one operation, so a put() that replaces the
	// object meanwhile gives the old object or the new one, never a mix.
	size_t room = kFirstRead;
	for (;;) {
		Bytes data(room);
		ReadOp op(rados_create_read_op());
		if (!op)
			return fail(errc::kInternal, where_ + ": no memory for a read of " + name);
		uint64_t size = 0;
		time_t mtime = 0;
		size_t got = 0;
		int statResult = 0, readResult = 0;
		rados_read_op_stat(op.get(), &size, &mtime, &statResult);
		rados_read_op_read(op.get(), 0, room, reinterpret_cast<char *>(data.data()), &got, &readResult);
		int r = rados_read_op_operate(op.get(), io_.get(), name.c_str(), 0);
		if (r == -ENOENT)
			return fail(errc::kObjectNotFound, where_ + ": no object " + name);
		if (r >= 0)
			r = statResult < 0 ? statResult : readResult;
		if (r < 0)
			return failed("read " + name, r);
		if (size <= room) {
			data.resize(got);
			if (got != size)
				return fail(errc::kIo, where_ + ": read " + name + ": " + std::to_string(got) + " of " +
							     std::to_string(size) + " bytes");
			return data;
		}
		room = size;
	}
}

Result<void> RadosBackend::getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out)
{
	for (size_t done = 0; done < out.size();) {
		size_t length = std::min(out.size() - done, kMaxRead);
		char *into = reinterpret_cast<char *>(out.data() + done);
		int r = rados_read(io_.get(), name.c_str(), into, length, offset + done);
		if (r == -ENOENT)
			return fail(errc::kObjectNotFound, where_ + ": no object " + name);
		if (r < 0)
			return failed("read " + name + " at " + std::to_string(offset + done), r);
		if (r == 0)
			return fail(errc::kCorrupt, where_ + ": " + name + " ends at " + std::to_string(offset + done) +
							    ", before " + std::to_string(offset + out.size()));
		done += size_t(r);
	}
	return {};
}

Result<ObjectInfo> RadosBackend::stat(const std::string &name)
{
	uint64_t size = 0;
	time_t mtime = 0;
	int r = rados_stat(io_.get(), name.c_str(), &size, &mtime);
	if (r == -ENOENT)
		return fail(errc::kObjectNotFound, where_ + ": no object " + name);
	if (r < 0)
		return failed("stat " + name, r);
	return ObjectInfo{name, size, timeOf(mtime)};
}

// The names in the namespace that start with `prefix`: RADOS lists a
// namespace whole, in hash order, so the prefix is applied here.
Result<std::vector<std::string>> RadosBackend::names(const std::string &prefix)
{
	rados_list_ctx_t ctx = nullptr;
	if (int r = rados_nobjects_list_open(io_.get(), &ctx); r < 0)
		return failed("list", r);
	std::vector<std::string> out;
	int r = 0;
	for (;;) {
		const char *entry = nullptr, *key = nullptr, *nspace = nullptr;
		size_t entryLength = 0, keyLength = 0, nspaceLength = 0;
		r = rados_nobjects_list_next2(ctx, &entry, &key, &nspace, &entryLength, &keyLength, &nspaceLength);
		if (r < 0)
			break;
		std::string name(entry, entryLength);
		if (name.starts_with(prefix))
			out.push_back(std::move(name));
	}
	rados_nobjects_list_close(ctx);
	if (r != -ENOENT)
		return failed("list", r);
	return out;
}

// Sizes and mtimes of listed objects, many requests in flight at once: a
// listing of thousands of packs is not thousands of round trips one after
// the other. Objects removed since they were listed are left out.
Result<void> RadosBackend::statAll(const std::vector<std::string> &names, std::vector<ObjectInfo> *out)
{
	struct Pending {
		Completion completion;
		uint64_t size = 0;
		time_t mtime = 0;
	};
	for (size_t start = 0; start < names.size(); start += kStatsInFlight) {
		size_t count = std::min(kStatsInFlight, names.size() - start);
		std::vector<Pending> pending(count);
		int firstError = 0;
		size_t issued = 0;
		for (; issued < count; issued++) {
			rados_completion_t c = nullptr;
			int r = rados_aio_create_completion2(nullptr, nullptr, &c);
			if (r == 0) {
				pending[issued].completion.reset(c);
				r = rados_aio_stat(io_.get(), names[start + issued].c_str(), c, &pending[issued].size,
						   &pending[issued].mtime);
			}
			if (r < 0) {
				firstError = r;
				break;
			}
		}
		// Every request issued is waited for, error or not: its
		// completion writes into `pending`.
		for (size_t i = 0; i < issued; i++) {
			rados_aio_wait_for_complete(pending[i].completion.get());
			int r = rados_aio_get_return_value(pending[i].completion.get());
			if (r == 0)
				out->push_back(ObjectInfo{names[start + i], pending[i].size, timeOf(pending[i].mtime)});
			else if (r != -ENOENT && firstError == 0)
				firstError = r;
		}
		if (firstError < 0)
			return failed("stat listed objects", firstError);
	}
	return {};
}

Result<void> RadosBackend::list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit)
{
	VS_ASSIGN(std::vector<std::string> all, names(prefix));
	std::erase_if(all, [](const std::string &name) { return name.starts_with(kClockProbe); });
	std::vector<ObjectInfo> infos;
	VS_TRY(statAll(all, &infos));
	for (const ObjectInfo &info : infos)
		visit(info);
	return {};
}

Result<void> RadosBackend::remove(const std::string &name)
{
	int r = rados_remove(io_.get(), name.c_str());
	if (r < 0 && r != -ENOENT)
		return failed("remove " + name, r);
	return {};
}

Result<std::chrono::system_clock::time_point> RadosBackend::now()
{
	// An object's mtime is the time its writer's librados put in the
	// request (the OSD keeps it as given), in whole seconds through the C
	// API: so the clock that mtimes are in is read the same way, through
	// an object of our own.
	uint8_t raw[8];
	VS_TRY(crypto::randomBytes(raw));
	std::string probe = kClockProbe + toHex(raw);
	VS_TRY(put(probe, {}));
	auto info = stat(probe);
	(void)remove(probe); // one left behind is invisible to list(), and sweepPartial() takes it
	if (!info)
		return std::unexpected(info.error());
	return info->modified;
}

Result<Backend::Swept> RadosBackend::sweepPartial(std::chrono::seconds grace, bool dryRun)
{
	// Every write is one operation, so an interrupted one leaves nothing;
	// only clock probes of an interrupted now() may remain.
	VS_ASSIGN(std::vector<std::string> probes, names(kClockProbe));
	std::vector<ObjectInfo> infos;
	VS_TRY(statAll(probes, &infos));
	VS_ASSIGN(auto cutoff, now());
	cutoff -= grace;
	Swept swept;
	for (const ObjectInfo &info : infos) {
		if (info.modified >= cutoff)
			continue;
		swept.objects++;
		swept.bytes += info.size;
		if (!dryRun)
			VS_TRY(remove(info.name));
	}
	return swept;
}

} // namespace

Result<std::unique_ptr<Backend>> openRadosBackend(const StoreUrl &url, const BackendSettings &settings)
{
	return RadosBackend::open(url, settings);
}

} // namespace virtsnap::store
