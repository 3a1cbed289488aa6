#include "daemon_client.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "core/cancel.h"

namespace virtsnap::cli {

Result<std::optional<DaemonClient>> DaemonClient::connect(const std::string &socketPath)
{
	sockaddr_un addr{};
	if (socketPath.size() >= sizeof(addr.sun_path))
		return fail(errc::kInvalidParameterValue, "socket path " + socketPath + " is too long");
	addr.sun_family = AF_UNIX;
	std::strncpy(addr.sun_path, socketPath.c_str(), sizeof(addr.sun_path) - 1);
	UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
		if (errno == EACCES || errno == EPERM)
			return fail(errc::kAccessDenied, "no permission to use virtsnapd's socket " + socketPath +
							    " (only root and the group virtsnap may)");
		return std::optional<DaemonClient>();
	}
	return std::optional<DaemonClient>(DaemonClient(std::move(fd)));
}

Result<std::string> DaemonClient::readLine()
{
	char chunk[65536];
	for (;;) {
		size_t nl = buffer_.find('\n');
		if (nl != std::string::npos) {
			std::string line = buffer_.substr(0, nl);
			buffer_.erase(0, nl + 1);
			return line;
		}
		ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR) {
			if (cancelRequested())
				return fail(errc::kIncorrectState, "interrupted");
			continue;
		}
		if (n <= 0)
			return fail(errc::kIo, "virtsnapd closed the connection");
		buffer_.append(chunk, size_t(n));
	}
}

Result<virtsnap::Json> DaemonClient::call(const Arguments &args)
{
	auto options = virtsnap::Json::parse(args.toJson());
	virtsnap::Json request = virtsnap::Json::object();
	request.set("command", virtsnap::Json::string(args.command()));
	request.set("options", options ? *options : virtsnap::Json::object());
	std::string line = request.dump() + "\n";
	if (::send(fd_.get(), line.data(), line.size(), MSG_NOSIGNAL) != ssize_t(line.size()))
		return failErrno("send to virtsnapd", errno);
	VS_ASSIGN(auto reply, readLine());
	auto json = virtsnap::Json::parse(reply);
	if (!json)
		return fail(errc::kIo, "virtsnapd sent a reply that is not JSON");
	return *json;
}

Result<void> DaemonClient::follow(const std::function<bool(const std::string &)> &onLine)
{
	std::string line = "{\"command\":\"subscribe\"}\n";
	if (::send(fd_.get(), line.data(), line.size(), MSG_NOSIGNAL) != ssize_t(line.size()))
		return failErrno("send to virtsnapd", errno);
	VS_ASSIGN(auto ack, readLine());
	auto json = virtsnap::Json::parse(ack);
	if (!json || !json->getBool("ok").value_or(false))
		return fail(errc::kAccessDenied, json ? json->get("error").getString("message").value_or("refused")
						 : "virtsnapd refused the subscription");
	for (;;) {
		auto event = readLine();
		if (!event)
			return {};
		if (!onLine(*event))
			return {};
	}
}

} // namespace virtsnap::cli
