#include "socket_probe.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "unique_fd.h"

namespace virtsnap {

bool socketAnswers(const std::filesystem::path &path)
{
	sockaddr_un addr{};
	if (path.native().size() >= sizeof(addr.sun_path))
		return false;
	addr.sun_family = AF_UNIX;
	std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
	UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	return probe.isValid() && ::connect(probe.get(), reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) == 0;
}

} // namespace virtsnap
