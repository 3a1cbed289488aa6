// virtsnapd's socket: a unix stream socket, one JSON request per line and
// one JSON reply per line (PROTOCOL.md). Each client gets its own thread,
// so a long request (a freeze, a restore) never stalls the others.
// Only root and members of the group `virtsnap` get in: the socket's mode
// says so, and every connection's peer credentials are checked again.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "core/unique_fd.h"
#include "events/dispatcher.h"
#include "service.h"

namespace virtsnap::daemon {

inline constexpr const char *kDefaultSocket = "/run/virtsnap/virtsnapd.sock";
inline constexpr const char *kGroup = "virtsnap";
// A request line longer than this is refused unread (PROTOCOL.md).
inline constexpr size_t kMaxRequestBytes = 1u << 20;

struct ServerOptions {
	// A client that sends no complete request for this long is let go.
	std::chrono::milliseconds idleTimeout{60'000};
};

class Server
{
public:
	// Binds the socket (mode 0660, group virtsnap when that group exists).
	// Refuses when another daemon answers there; replaces a stale socket.
	static Result<std::unique_ptr<Server>> listen(const std::filesystem::path &socketPath, Service &service,
						      events::Dispatcher &events, ServerOptions options = {});
	~Server();

	// Serves until stop() (from a signal handler's thread or another).
	void run();
	void stop();

private:
	Server(Service &service, events::Dispatcher &events, ServerOptions options)
		: service_(service), events_(events), options_(options)
	{
	}
	void serveClient(int fd);
	// One request per line, one reply per line, until the client goes or
	// idles past the timeout.
	void serveRequests(int fd, const std::string &who);
	// The next line, without its newline; nullopt when the client went,
	// idled too long, or sent a line too long (then it was told so).
	std::optional<std::string> readLine(int fd, std::string &buffer);
	Json answer(const std::string &line, const std::string &who);
	// After "subscribe": every event, one per line, until the client goes.
	void streamEvents(int fd);
	bool allowed(int fd, std::string *who);

	Service &service_;
	events::Dispatcher &events_;
	const ServerOptions options_;
	std::filesystem::path path_;
	UniqueFd listenFd_;
	UniqueFd wakeRead_, wakeWrite_;
	std::atomic<bool> stopping_{false};
	std::mutex clientsMutex_;
	std::set<int> clients_;
	std::atomic<int> clientThreads_{0};
};

} // namespace virtsnap::daemon
