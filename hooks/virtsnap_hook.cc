// The libvirt hook, installed as /etc/libvirt/hooks/qemu.d/virtsnap:
//
//   virtsnap DOMAIN OPERATION SUB-OPERATION EXTRA < domain XML
//
// It hands the event to virtsnapd over its socket and returns at once.
// It never calls libvirt (libvirtd waits for its hooks: that deadlocks),
// never writes to stdout (libvirt reads a migrate or restore hook's
// stdout as domain XML), and does nothing when no daemon answers, so
// domains start and stop as if it were not there. A refusal (a migration
// during a capture, a start during a restore) is one line on stderr and
// exit status 1, which libvirt reports and acts on.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/config.h"
#include "json/json.h"

namespace {

using virtsnap::Json;

// Time the daemon has to answer; it answers from memory, so this is
// only reached when it hangs, and then the hook gives up rather than
// hold libvirt.
constexpr int kReplyTimeoutMs = 2000;

std::string readAll(int fd)
{
	std::string s;
	char buf[65536];
	for (;;) {
		ssize_t n = ::read(fd, buf, sizeof buf);
		if (n > 0)
			s.append(buf, size_t(n));
		else if (n == 0 || errno != EINTR)
			return s;
	}
}

// The domain XML's <uuid>: enough string search for libvirt's own output,
// and far cheaper than an XML parser on a path that must stay fast.
std::string uuidOf(const std::string &xml)
{
	size_t start = xml.find("<uuid>");
	size_t end = xml.find("</uuid>");
	if (start == std::string::npos || end == std::string::npos || end < start)
		return "";
	return xml.substr(start + 6, end - start - 6);
}

std::string socketPath()
{
	if (const char *env = std::getenv("VIRTSNAP_SOCKET"); env && *env)
		return env;
	// A config it cannot read leaves the default: the hook must never
	// keep a domain from starting over a typo the daemon reports anyway.
	auto config = virtsnap::loadConfig(virtsnap::defaultConfigPath());
	return config ? config->socket.string() : virtsnap::Config{}.socket.string();
}

Json list(const std::string &v)
{
	return Json::array().append(Json::string(v));
}

} // namespace

int main(int argc, char **argv)
{
	if (argc < 4) {
		std::fprintf(stderr, "virtsnap hook: usage: %s DOMAIN OPERATION SUB-OPERATION [EXTRA] < domain XML\n",
			     argv[0]);
		return 2;
	}
	std::string xml = readAll(0);

	int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sockaddr_un addr{};
	addr.sun_family = AF_UNIX;
	std::string path = socketPath();
	if (fd < 0 || path.size() >= sizeof addr.sun_path)
		return 0;
	std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
	if (::connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0)
		return 0; // no daemon: nothing to tell, nothing to refuse

	Json options = Json::object();
	options.set("domain", list(argv[1]));
	options.set("uuid", list(uuidOf(xml)));
	options.set("operation", list(argv[2]));
	options.set("sub-operation", list(argv[3]));
	Json request = Json::object();
	request.set("command", Json::string("libvirt-hook"));
	request.set("options", options);
	std::string line = request.dump() + "\n";
	if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) != ssize_t(line.size()))
		return 0;

	std::string reply;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kReplyTimeoutMs);
	while (reply.find('\n') == std::string::npos) {
		int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
										      std::chrono::steady_clock::now())
				       .count());
		pollfd p{fd, POLLIN, 0};
		if (left <= 0 || ::poll(&p, 1, left) <= 0)
			return 0;
		char buf[4096];
		ssize_t n = ::read(fd, buf, sizeof buf);
		if (n <= 0)
			return 0;
		reply.append(buf, size_t(n));
	}
	::close(fd);
	auto doc = Json::parse(reply.substr(0, reply.find('\n')));
	if (!doc || doc->getBool("ok").value_or(true))
		return 0;
	std::fprintf(stderr, "virtsnap: %s\n",
		     doc->get("error").getString("message").value_or("refused by virtsnapd").c_str());
	return 1;
}
