// Shared by the events tests: handler scripts written into a scratch
// directory, files read back, and questions about processes.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_env.h"

namespace virtsnap::events::test {

using namespace std::chrono_literals;
using virtsnap::test::readFile;

inline void writeFile(const std::string &path, const std::string &text, mode_t mode = 0644)
{
	{
		std::ofstream out(path, std::ios::trunc);
		out << text;
	}
	ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

// A /bin/sh script; `body` follows the #! line.
inline void writeScript(const std::string &path, const std::string &body, mode_t mode = 0755)
{
	writeFile(path, "#!/bin/sh\n" + body + "\n", mode);
}

inline std::vector<std::string> readLines(const std::string &path)
{
	std::vector<std::string> lines;
	std::ifstream in(path);
	for (std::string line; std::getline(in, line);)
		lines.push_back(line);
	return lines;
}

inline std::vector<std::string> listDir(const std::string &dir)
{
	std::vector<std::string> names;
	if (DIR *d = ::opendir(dir.c_str())) {
		while (dirent *e = ::readdir(d)) {
			std::string n = e->d_name;
			if (n != "." && n != "..")
				names.push_back(n);
		}
		::closedir(d);
	}
	std::sort(names.begin(), names.end());
	return names;
}

// Polls `done` until it holds or `limit` passes; its final answer.
inline bool waitFor(const std::function<bool()> &done, std::chrono::milliseconds limit = 5000ms)
{
	auto end = std::chrono::steady_clock::now() + limit;
	while (!done()) {
		if (std::chrono::steady_clock::now() >= end)
			return done();
		std::this_thread::sleep_for(5ms);
	}
	return true;
}

// /proc/PID/stat: "pid (comm) S ppid pgrp ..."; comm may hold spaces and
// parentheses, so parse from the last ')'.
inline bool procStat(pid_t pid, char *state, pid_t *pgrp)
{
	std::string text = readFile("/proc/" + std::to_string(pid) + "/stat");
	auto close = text.rfind(')');
	if (close == std::string::npos)
		return false;
	std::istringstream rest(text.substr(close + 1));
	int ppid = 0, group = 0;
	rest >> *state >> ppid >> group;
	*pgrp = group;
	return bool(rest);
}

// Running, as opposed to gone or a zombie: an orphan reparented to a PID 1
// that does not reap (as in some containers) stays a zombie, which is
// harmless and not ours to clean.
inline bool isRunning(pid_t pid)
{
	if (::kill(pid, 0) != 0)
		return false;
	char state = 0;
	pid_t pgrp = 0;
	return procStat(pid, &state, &pgrp) && state != 'Z';
}

// Any process of process group `pgid` still running (not a zombie).
inline bool groupRunning(pid_t pgid)
{
	for (const std::string &name : listDir("/proc")) {
		if (name.find_first_not_of("0123456789") != std::string::npos)
			continue;
		char state = 0;
		pid_t pgrp = 0;
		if (procStat(pid_t(std::stoi(name)), &state, &pgrp) && pgrp == pgid && state != 'Z')
			return true;
	}
	return false;
}

inline pid_t readPid(const std::string &path)
{
	std::string text = readFile(path);
	return text.empty() ? -1 : pid_t(std::stol(text));
}

} // namespace virtsnap::events::test
