// The helper programs a test's code started (qemu-nbd), found in /proc:
// to stop one mid-operation, and to see that none is left.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace virtsnap::test {

// Our children of that name, as /proc lists them.
inline std::vector<pid_t> childrenNamed(const std::string &name)
{
	std::vector<pid_t> found;
	for (const auto &entry : std::filesystem::directory_iterator("/proc")) {
		std::string pid = entry.path().filename().string();
		if (pid.find_first_not_of("0123456789") != std::string::npos)
			continue;
		std::ifstream in(entry.path() / "stat");
		std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
		auto open = text.find('('), close = text.rfind(')');
		if (open == std::string::npos || close == std::string::npos || text.substr(open + 1, close - open - 1) != name)
			continue;
		std::istringstream rest(text.substr(close + 2));
		std::string state;
		pid_t ppid = 0;
		if (rest >> state >> ppid && ppid == ::getpid())
			found.push_back(pid_t(std::stol(pid)));
	}
	return found;
}

// Neither running nor stopped: gone, or a zombie its new parent has yet to reap.
inline bool processGone(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
	auto close = text.rfind(')');
	return text.empty() || (close != std::string::npos && text.substr(close + 2, 1) == "Z");
}

} // namespace virtsnap::test
