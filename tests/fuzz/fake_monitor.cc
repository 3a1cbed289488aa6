#include "fake_monitor.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "fuzz_util.h"
#include "json/json.h"

namespace virtsnap::fuzz {

namespace {

int listener()
{
	static int fd = [] {
		char dir[] = "/tmp/virtsnap-fuzz-XXXXXX";
		check(::mkdtemp(dir) != nullptr, "mkdtemp");
		static std::string path = std::string(dir) + "/monitor.sock";
		std::atexit([] { std::filesystem::remove_all(std::filesystem::path(path).parent_path()); });
		int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sockaddr_un addr{};
		addr.sun_family = AF_UNIX;
		std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
		bool listening = s >= 0 && ::bind(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0 &&
				 ::listen(s, 4) == 0;
		check(listening, "listen on the monitor socket");
		return s;
	}();
	return fd;
}

void writeAll(int fd, std::string_view data)
{
	while (!data.empty()) {
		ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
		if (n <= 0)
			return;
		data.remove_prefix(size_t(n));
	}
}

// The id of the first command, read up to its newline; "" if there is none.
std::string firstSyncId(int fd)
{
	std::string line;
	char c;
	while (::recv(fd, &c, 1, 0) == 1 && c != '\n')
		line.push_back(c);
	if (!line.empty() && line[0] == '\xff')
		line.erase(0, 1);
	auto command = Json::parse(line);
	if (!command)
		return "";
	auto id = command->get("arguments").getInt("id");
	return id ? std::to_string(*id) : "";
}

void serve(std::string input, bool substituteSyncId)
{
	int fd = ::accept4(listener(), nullptr, nullptr, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (substituteSyncId) {
		std::string id = firstSyncId(fd);
		for (size_t at = input.find("@ID@"); at != std::string::npos; at = input.find("@ID@", at + id.size()))
			input.replace(at, 4, id);
	}
	writeAll(fd, input);
	::shutdown(fd, SHUT_WR);
	char drain[4096];
	while (::recv(fd, drain, sizeof(drain), 0) > 0) {
	}
	::close(fd);
}

} // namespace

const std::string &FakeMonitor::socketPath()
{
	static const std::string path = [] {
		sockaddr_un addr{};
		socklen_t length = sizeof(addr);
		::getsockname(listener(), reinterpret_cast<sockaddr *>(&addr), &length);
		return std::string(addr.sun_path);
	}();
	return path;
}

FakeMonitor::FakeMonitor(std::string_view input, bool substituteSyncId)
	: thread_(serve, std::string(input), substituteSyncId)
{
}

FakeMonitor::~FakeMonitor()
{
	thread_.join();
}

} // namespace virtsnap::fuzz
