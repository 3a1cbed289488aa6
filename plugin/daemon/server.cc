#include "server.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <system_error>
#include <chrono>
#include <cstring>
#include <vector>

#include "commands.h"
#include "core/file_util.h"
#include "core/socket_probe.h"
#include "requests.h"

namespace virtsnap::daemon {

namespace {

bool sendLine(int fd, const std::string &line)
{
	std::string data = line + "\n";
	size_t off = 0;
	while (off < data.size()) {
		ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		off += size_t(n);
	}
	return true;
}

Json errorJson(const Error &e)
{
	Json j = Json::object();
	j.set("code", Json::string(e.code));
	j.set("message", Json::string(e.message));
	return j;
}

std::optional<gid_t> groupId(const char *name)
{
	struct group *g = ::getgrnam(name);
	if (!g)
		return std::nullopt;
	return g->gr_gid;
}

} // namespace

Result<std::unique_ptr<Server>> Server::listen(const std::filesystem::path &socketPath, Service &service,
					       events::Dispatcher &events, ServerOptions options)
{
	std::unique_ptr<Server> s(new Server(service, events, options));
	s->path_ = socketPath;
	if (socketPath.string().size() >= sizeof(sockaddr_un::sun_path))
		return fail(errc::kInvalidParameterValue, "socket path " + socketPath.string() + " is too long");
	auto gid = groupId(kGroup);
	auto dir = socketPath.parent_path();
	if (!dir.empty() && !std::filesystem::exists(dir)) {
		VS_TRY(makeDirs(dir, 0750));
		if (gid && ::chown(dir.c_str(), 0, *gid) != 0)
			return failErrno("chown " + dir.string(), errno);
	}

	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	std::strncpy(addr.sun_path, socketPath.c_str(), sizeof(addr.sun_path) - 1);
	{
		// Someone answering means another daemon: never steal its socket.
		if (socketAnswers(socketPath))
			return fail(errc::kIncorrectState, "another virtsnapd answers on " + socketPath.string());
		::unlink(socketPath.c_str());
	}
	s->listenFd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	// The mode is set before anyone can connect: bind under a umask that
	// leaves nothing to others.
	mode_t old = ::umask(0117);
	int rc = ::bind(s->listenFd_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr));
	::umask(old);
	if (rc != 0)
		return failErrno("bind " + socketPath.string(), errno);
	if (gid && ::chown(socketPath.c_str(), 0, *gid) != 0)
		return failErrno("chown " + socketPath.string(), errno);
	if (::chmod(socketPath.c_str(), 0660) != 0)
		return failErrno("chmod " + socketPath.string(), errno);
	if (::listen(s->listenFd_.get(), 64) != 0)
		return failErrno("listen " + socketPath.string(), errno);
	int pipeFds[2];
	if (::pipe2(pipeFds, O_CLOEXEC) != 0)
		return failErrno("pipe", errno);
	s->wakeRead_ = UniqueFd(pipeFds[0]);
	s->wakeWrite_ = UniqueFd(pipeFds[1]);
	return s;
}

Server::~Server()
{
	stop();
	{
		std::lock_guard lock(clientsMutex_);
		for (int fd : clients_)
			::shutdown(fd, SHUT_RDWR);
	}
	// Client threads end once their sockets are shut down; requests in
	// progress finish first (they stop on the cancel flag or their own
	// timeouts). Never return before: they use the service.
	while (clientThreads_.load() > 0)
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	::unlink(path_.c_str());
}

void Server::stop()
{
	if (!stopping_.exchange(true) && wakeWrite_.isValid()) {
		char c = 1;
		(void)!::write(wakeWrite_.get(), &c, 1);
	}
}

bool Server::allowed(int fd, std::string *who)
{
	struct ucred cred{};
	socklen_t len = sizeof(cred);
	if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return false;
	*who = std::to_string(cred.uid);
	if (cred.uid == 0)
		return true;
	auto gid = groupId(kGroup);
	if (!gid)
		return false;
	if (cred.gid == *gid)
		return true;
	struct passwd *pw = ::getpwuid(cred.uid);
	if (!pw)
		return false;
	int n = 64;
	std::vector<gid_t> groups(static_cast<size_t>(n));
	if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
		groups.resize(size_t(n));
		::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n);
	}
	for (int i = 0; i < n; i++)
		if (groups[size_t(i)] == *gid)
			return true;
	return false;
}

void Server::run()
{
	while (!stopping_) {
		pollfd fds[2] = {{listenFd_.get(), POLLIN, 0}, {wakeRead_.get(), POLLIN, 0}};
		if (::poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (fds[1].revents)
			return;
		int fd = ::accept4(listenFd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
		if (fd < 0) {
			// Out of descriptors: the pending connection stays readable,
			// so wait instead of spinning until a client leaves.
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
				std::this_thread::sleep_for(std::chrono::milliseconds(100));
			continue;
		}
		clientThreads_++;
		try {
			std::thread([this, fd] {
				serveClient(fd);
				clientThreads_--;
			}).detach();
		} catch (const std::system_error &) {
			// No thread to be had: this client goes unserved, not the daemon.
			::close(fd);
			clientThreads_--;
		}
	}
}

void Server::serveClient(int fd)
{
	UniqueFd owned(fd);
	{
		std::lock_guard lock(clientsMutex_);
		clients_.insert(fd);
	}
	std::string who;
	if (!allowed(fd, &who)) {
		Json reply = Json::object();
		reply.set("ok", Json::boolean(false));
		reply.set("error", errorJson(Error{errc::kAccessDenied, "only root and the group virtsnap may use virtsnapd"}));
		sendLine(fd, reply.dump());
	} else {
		serveRequests(fd, who);
	}
	std::lock_guard lock(clientsMutex_);
	clients_.erase(fd);
}

void Server::serveRequests(int fd, const std::string &who)
{
	std::string buffer;
	while (!stopping_) {
		auto line = readLine(fd, buffer);
		if (!line)
			return;
		if (isValidUtf8(*line))
			if (auto request = Json::parse(*line); request && request->getString("command") == "subscribe") {
				streamEvents(fd);
				return;
			}
		if (!sendLine(fd, answer(*line, who).dump()))
			return;
	}
}

std::optional<std::string> Server::readLine(int fd, std::string &buffer)
{
	char chunk[4096];
	for (;;) {
		if (size_t nl = buffer.find('\n'); nl != std::string::npos) {
			std::string line = buffer.substr(0, nl);
			buffer.erase(0, nl + 1);
			return line;
		}
		if (buffer.size() >= kMaxRequestBytes) {
			// Refused unread: the rest is never taken into memory.
			Json reply = Json::object();
			reply.set("ok", Json::boolean(false));
			reply.set("error", errorJson(Error{errc::kInvalidParameterValue,
							   "the request is longer than " + std::to_string(kMaxRequestBytes) +
								   " bytes"}));
			sendLine(fd, reply.dump());
			return std::nullopt;
		}
		pollfd p{fd, POLLIN, 0};
		int ready = ::poll(&p, 1, int(options_.idleTimeout.count()));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0 || stopping_)
			return std::nullopt; // idle too long: let it go
		ssize_t n = ::recv(fd, chunk, std::min(sizeof(chunk), kMaxRequestBytes - buffer.size()), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return std::nullopt;
		buffer.append(chunk, size_t(n));
	}
}

Json Server::answer(const std::string &line, const std::string &who)
{
	Json reply = Json::object();
	auto args = parseRequestLine(line);
	Result<Reply> result = args ? service_.run(*args, who) : std::unexpected(args.error());
	if (!result) {
		reply.set("ok", Json::boolean(false));
		reply.set("error", errorJson(result.error()));
		return reply;
	}
	reply.set("ok", Json::boolean(!result->failure));
	reply.set("result", result->doc);
	if (result->failure)
		reply.set("error", errorJson(*result->failure));
	return reply;
}

void Server::streamEvents(int fd)
{
	// The connection becomes a stream of events until it closes.
	Json ack = Json::object();
	ack.set("ok", Json::boolean(true));
	if (!sendLine(fd, ack.dump()))
		return;
	// A subscriber that stops reading must not hold the dispatcher: its
	// sends give up after a while.
	struct timeval limit{5, 0};
	::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
	std::mutex m;
	bool gone = false;
	uint64_t id = events_.subscribe([&, fd](const std::string &event) {
		bool sent = sendLine(fd, event);
		if (!sent) {
			std::lock_guard lock(m);
			gone = true;
		}
		return sent;
	});
	// Wait for the client to hang up (or the daemon to stop).
	while (!stopping_) {
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, 200) > 0) {
			char c;
			if (::recv(fd, &c, 1, MSG_DONTWAIT) <= 0)
				break;
		}
		std::lock_guard lock(m);
		if (gone)
			break;
	}
	events_.unsubscribe(id);
}

} // namespace virtsnap::daemon
