#include "tests/support/test_env.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

extern char **environ;

namespace virtsnap::test {

bool inCi()
{
	const char *ci = std::getenv("CI");
	return ci != nullptr && std::strcmp(ci, "true") == 0;
}

std::optional<std::string> findTool(const std::string &name)
{
	if (name.find('/') != std::string::npos) {
		if (::access(name.c_str(), X_OK) == 0)
			return name;
		return std::nullopt;
	}
	const char *path = std::getenv("PATH");
	std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
	size_t start = 0;
	while (start <= dirs.size()) {
		size_t end = dirs.find(':', start);
		if (end == std::string::npos)
			end = dirs.size();
		std::string dir = dirs.substr(start, end - start);
		std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
		std::error_code ec;
		if (::access(candidate.c_str(), X_OK) == 0 &&
		    std::filesystem::is_regular_file(candidate, ec))
			return candidate;
		start = end + 1;
	}
	return std::nullopt;
}

TempDir::TempDir(const std::string &prefix, const std::string &parent)
{
	std::string base = parent;
	if (base.empty()) {
		const char *tmp = std::getenv("TMPDIR");
		base = tmp && *tmp ? tmp : "/tmp";
	}
	std::string tmpl = base + "/" + prefix + "-XXXXXX";
	if (::mkdtemp(tmpl.data()) == nullptr)
		throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
	path_ = tmpl;
}

TempDir::~TempDir()
{
	if (path_.empty())
		return;
	std::error_code ec;
	std::filesystem::remove_all(path_, ec);
}

std::string TempDir::file(const std::string &name) const
{
	return path_ + "/" + name;
}

std::string envOr(const char *name, const std::string &fallback)
{
	const char *value = std::getenv(name);
	return value ? value : fallback;
}

std::string sourceDir()
{
	return envOr("VIRTSNAP_SOURCE_DIR", ".");
}

std::string sourcePath(const std::string &relative)
{
	return sourceDir() + "/" + relative;
}

std::string readFile(const std::string &path, size_t offset)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return {};
	in.seekg(static_cast<std::streamoff>(offset));
	std::ostringstream out;
	out << in.rdbuf();
	return out.str();
}

std::string readRequiredFile(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	EXPECT_TRUE(in) << "cannot read " << path;
	std::ostringstream out;
	out << in.rdbuf();
	return out.str();
}

std::vector<std::string> lines(const std::string &text)
{
	std::vector<std::string> out;
	std::istringstream in(text);
	for (std::string line; std::getline(in, line);)
		if (!line.empty())
			out.push_back(line);
	return out;
}

std::chrono::milliseconds since(std::chrono::steady_clock::time_point start)
{
	return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

HostUsersLock::HostUsersLock() : fd_(::open("/tmp/virtsnap-test-users.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600))
{
	while (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
	}
}

HostUsersLock::~HostUsersLock()
{
	if (fd_ >= 0)
		::close(fd_);
}

StoppedProcess::StoppedProcess(pid_t pid) : pid_(pid > 0 && ::kill(pid, SIGSTOP) == 0 ? pid : -1) {}

void StoppedProcess::resume()
{
	if (pid_ > 0)
		::kill(pid_, SIGCONT);
	pid_ = -1;
}

mode_t fileMode(const std::string &path)
{
	struct stat st {};
	EXPECT_EQ(::stat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
	return st.st_mode & 07777;
}

std::vector<std::filesystem::path> filesContaining(const std::filesystem::path &dir, const std::string &part)
{
	namespace fs = std::filesystem;
	std::vector<fs::path> out;
	std::error_code ec;
	for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec))
		if (it->is_regular_file() && it->path().filename().string().find(part) != std::string::npos)
			out.push_back(it->path());
	std::sort(out.begin(), out.end());
	return out;
}

pid_t spawn(const std::vector<std::string> &argv, int outFd, int errFd, const std::vector<std::string> &env)
{
	if (argv.empty()) {
		errno = EINVAL;
		return -1;
	}
	// Everything the child touches is prepared before fork(): the test
	// process may have other threads, so the child may only exec.
	std::vector<std::string> environment;
	for (char **e = environ; *e; e++) {
		std::string_view entry(*e);
		bool replaced = std::any_of(env.begin(), env.end(), [&](const std::string &mine) {
			size_t eq = mine.find('=');
			return entry.substr(0, entry.find('=')) == std::string_view(mine).substr(0, eq);
		});
		if (!replaced)
			environment.emplace_back(entry);
	}
	environment.insert(environment.end(), env.begin(), env.end());
	std::vector<char *> args, envp;
	for (const auto &arg : argv)
		args.push_back(const_cast<char *>(arg.c_str()));
	args.push_back(nullptr);
	for (auto &entry : environment)
		envp.push_back(entry.data());
	envp.push_back(nullptr);
	const std::string failed = "cannot exec " + argv[0] + "\n";
	int devNull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devNull < 0)
		return -1;
	pid_t parent = ::getpid();
	pid_t pid = ::fork();
	if (pid == 0) {
		::prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (::getppid() != parent)
			::_exit(127);
		::dup2(devNull, 0);
		::dup2(outFd, 1);
		::dup2(errFd, 2);
		::execvpe(args[0], args.data(), envp.data());
		(void)!::write(2, failed.data(), failed.size());
		::_exit(127);
	}
	int forkErrno = errno;
	::close(devNull);
	errno = forkErrno;
	return pid;
}

int runCommand(const std::vector<std::string> &argv, std::string *output)
{
	int pipeFds[2];
	if (::pipe2(pipeFds, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = spawn(argv, pipeFds[1], pipeFds[1]);
	::close(pipeFds[1]);
	if (pid < 0) {
		::close(pipeFds[0]);
		return -1;
	}

	std::string captured;
	char buf[4096];
	for (;;) {
		ssize_t n = ::read(pipeFds[0], buf, sizeof(buf));
		if (n > 0)
			captured.append(buf, static_cast<size_t>(n));
		else if (n == 0 || errno != EINTR)
			break;
	}
	::close(pipeFds[0]);

	int status = 0;
	while (::waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	if (output)
		*output = std::move(captured);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

namespace {

// qemu-img with `args`; false with `what` failed and its output in `error`.
bool runQemuImg(std::vector<std::string> args, const std::string &what, std::string *error)
{
	args.insert(args.begin(), "qemu-img");
	std::string output;
	int status = runCommand(args, &output);
	if (status == 0)
		return true;
	if (error)
		*error = what + " failed (status " + std::to_string(status) + "): " + output;
	return false;
}

} // namespace

bool createImage(const std::string &path, const std::string &format, const std::string &size,
		 std::string *error)
{
	return runQemuImg({"create", "-q", "-f", format, path, size}, "qemu-img create " + path, error);
}

bool convertImage(const std::string &from, const std::string &fromFormat, const std::string &to,
		  const std::string &toFormat, std::string *error)
{
	return runQemuImg({"convert", "-f", fromFormat, "-O", toFormat, from, to},
			  "qemu-img convert " + from + " " + to, error);
}

} // namespace virtsnap::test
