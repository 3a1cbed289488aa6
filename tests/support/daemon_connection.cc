#include "tests/support/daemon_connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "tests/support/virtsnapd.h"

namespace virtsnap::test {

using Clock = std::chrono::steady_clock;

DaemonConnection::DaemonConnection(const std::string &socket) : fd_(connectToSocket(socket)) {}

DaemonConnection::~DaemonConnection()
{
	if (fd_ >= 0)
		::close(fd_);
}

bool DaemonConnection::send(const std::string &data) const
{
	return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == ssize_t(data.size());
}

std::string DaemonConnection::readLine(std::chrono::milliseconds limit)
{
	auto deadline = Clock::now() + limit;
	for (;;) {
		if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
			std::string line = buffer_.substr(0, nl);
			buffer_.erase(0, nl + 1);
			return line;
		}
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
		pollfd p{fd_, POLLIN, 0};
		if (left.count() <= 0 || ::poll(&p, 1, int(left.count())) <= 0)
			return "";
		char chunk[4096];
		ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
		if (n <= 0)
			return "";
		buffer_.append(chunk, size_t(n));
	}
}

bool DaemonConnection::closedWithin(std::chrono::milliseconds limit) const
{
	pollfd p{fd_, POLLIN, 0};
	if (::poll(&p, 1, int(limit.count())) <= 0)
		return false;
	char c;
	return ::recv(fd_, &c, 1, MSG_DONTWAIT) == 0;
}

long procStatusField(pid_t pid, const std::string &field)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/status");
	std::string line;
	while (std::getline(in, line))
		if (line.rfind(field + ":", 0) == 0)
			return std::stol(line.substr(field.size() + 1));
	return -1;
}

} // namespace virtsnap::test
