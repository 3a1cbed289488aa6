#include "lease.h"

#include <signal.h>
#include <errno.h>
#include <unistd.h>

#include <fstream>
#include <vector>

#include "core/ids.h"
#include "crypto/crypto.h"
#include "json/json.h"

namespace virtsnap::store {

namespace {

using Clock = std::chrono::steady_clock;

std::string thisHost()
{
	char name[256] = {};
	::gethostname(name, sizeof(name) - 1);
	return name;
}

std::string processName(pid_t pid)
{
	std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
	std::string name;
	std::getline(comm, name);
	return name;
}

int64_t steadyNs()
{
	return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

struct Holder {
	std::string name, kind, host, process, purpose, created;
	int64_t pid = 0;

	std::string describe() const
	{
		return host + " (" + process + " pid " + std::to_string(pid) + ", " + purpose + ", since " + created + ")";
	}
};

// On this host a dead holder is known at once, without waiting for its
// lease to run out; the process name guards against a reused pid.
bool diedHere(const Holder &h)
{
	if (h.host != thisHost() || h.pid <= 0 || h.pid == ::getpid())
		return false;
	if (::kill(pid_t(h.pid), 0) != 0 && errno == ESRCH)
		return true;
	return processName(pid_t(h.pid)) != h.process;
}

// A lease object's holder, if it holds now. One that cannot be read is
// judged by its age alone: a lease half written by a crash ages out too.
Result<std::optional<Holder>> liveHolder(Backend &backend, const ObjectInfo &info, const LeaseOptions &options,
					 std::chrono::system_clock::time_point now)
{
	Holder h;
	h.name = info.name;
	auto body = backend.get(info.name);
	if (!body) {
		if (body.error().code == errc::kObjectNotFound)
			return std::nullopt; // released meanwhile
		return std::unexpected(body.error());
	}
	if (auto j = Json::parse(std::string_view((const char *)body->data(), body->size()))) {
		h.kind = j->getString("kind").value_or("");
		h.host = j->getString("host").value_or("");
		h.pid = j->getInt("pid").value_or(0);
		h.process = j->getString("process").value_or("");
		h.purpose = j->getString("purpose").value_or("");
		h.created = j->getString("created").value_or("");
	}
	if (now - info.modified > options.duration || diedHere(h))
		return std::nullopt;
	return h;
}

// The holders that hold now; the names of the lease objects that do not
// go to `stale`, if given.
Result<std::vector<Holder>> liveHolders(Backend &backend, const LeaseOptions &options,
					std::vector<std::string> *stale = nullptr)
{
	std::vector<ObjectInfo> objects;
	VS_TRY(backend.list("locks/", [&](const ObjectInfo &info) { objects.push_back(info); }));
	VS_ASSIGN(auto now, backend.now());
	std::vector<Holder> out;
	for (const ObjectInfo &info : objects) {
		VS_ASSIGN(auto holder, liveHolder(backend, info, options, now));
		if (holder)
			out.push_back(std::move(*holder));
		else if (stale)
			stale->push_back(info.name);
	}
	return out;
}

} // namespace

Lease::Lease(Backend &backend, std::string name, std::string body, LeaseOptions options)
	: backend_(backend), name_(std::move(name)), body_(std::move(body)), options_(options), renewedAt_(steadyNs())
{
}

Result<std::unique_ptr<Lease>> Lease::acquire(Backend &backend, Kind kind, const std::string &purpose,
					      LeaseOptions options)
{
	uint8_t raw[8];
	VS_TRY(crypto::randomBytes(raw));
	const char *kindName = kind == Kind::Exclusive ? "exclusive" : "shared";
	std::string name = std::string("locks/") + kindName + "-" + toHex(raw);
	Json body = Json::object();
	body.set("kind", Json::string(kindName));
	body.set("host", Json::string(thisHost()));
	body.set("pid", Json::integer(::getpid()));
	body.set("process", Json::string(processName(::getpid())));
	body.set("purpose", Json::string(purpose));
	body.set("created", Json::string(isoTimeNow()));
	std::string text = body.dump();

	std::unique_ptr<Lease> lease(new Lease(backend, name, text, options));
	auto bytes = std::span((const uint8_t *)text.data(), text.size());
	if (auto r = backend.create(name, bytes); !r)
		return fail(r.error().code, "take a lease on " + backend.describe() + ": " + r.error().message);
	// Written before the others are looked at: see the header.
	auto holders = liveHolders(backend, options);
	if (!holders) {
		(void)backend.remove(name); // ages out if this fails too
		return std::unexpected(holders.error());
	}
	for (const Holder &h : *holders) {
		if (h.name == name || (kind == Kind::Shared && h.kind != "exclusive"))
			continue;
		(void)backend.remove(name); // as above
		return fail(errc::kIncorrectState, "store " + backend.describe() + " is in use by " + h.describe() +
							   (kind == Kind::Exclusive ? "; gc runs alone" : "; gc runs there"));
	}
	lease->renewer_ = std::thread([l = lease.get()] { l->renewLoop(); });
	return lease;
}

Lease::~Lease()
{
	{
		std::lock_guard lock(mutex_);
		stopping_ = true;
		stop_.notify_all();
	}
	if (renewer_.joinable())
		renewer_.join();
	(void)backend_.remove(name_); // a lease that stays ages out
}

void Lease::renewLoop()
{
	std::unique_lock lock(mutex_);
	while (!stop_.wait_for(lock, options_.renewInterval, [&] { return stopping_; })) {
		lock.unlock();
		auto started = steadyNs();
		if (backend_.put(name_, std::span((const uint8_t *)body_.data(), body_.size())))
			renewedAt_ = started;
		lock.lock();
	}
}

bool Lease::held() const
{
	// Others judge by the backend's clock from the last write; a fifth of
	// the lease is the margin for the write's own time and clock rates.
	auto margin = options_.duration / 5;
	auto age = std::chrono::nanoseconds(steadyNs() - renewedAt_.load());
	return age < options_.duration - margin;
}

Result<std::vector<std::string>> heldLeases(Backend &backend, LeaseOptions options)
{
	VS_ASSIGN(auto holders, liveHolders(backend, options));
	std::vector<std::string> out;
	for (const Holder &h : holders)
		out.push_back(h.kind + " " + h.describe());
	return out;
}

Result<uint64_t> removeStaleLeases(Backend &backend, LeaseOptions options)
{
	std::vector<std::string> stale;
	VS_TRY(liveHolders(backend, options, &stale));
	for (const std::string &name : stale)
		VS_TRY(backend.remove(name));
	return stale.size();
}

} // namespace virtsnap::store
