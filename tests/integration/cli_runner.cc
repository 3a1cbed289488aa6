#include "cli_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "tests/support/test_env.h"

namespace virtsnap::test {

virtsnap::Json CliResult::json() const
{
	auto j = virtsnap::Json::parse(out);
	return j ? *j : virtsnap::Json();
}

CliResult runVirtsnap(const std::vector<std::string> &args, const std::vector<std::string> &env, int signal,
		      int signalAfterMs)
{
	const char *bin = std::getenv("VIRTSNAP_BIN");
	CliResult r;
	if (!bin) {
		r.err = "VIRTSNAP_BIN is not set";
		return r;
	}
	TempDir capture("vs-cli");
	std::string outPath = capture.file("out"), errPath = capture.file("err");
	int outFd = ::open(outPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int errFd = ::open(errPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	std::vector<std::string> argv{bin};
	argv.insert(argv.end(), args.begin(), args.end());
	pid_t pid = spawn(argv, outFd, errFd, env);
	int status = 0;
	if (signalAfterMs >= 0) {
		usleep(useconds_t(signalAfterMs) * 1000);
		if (waitpid(pid, &status, WNOHANG) == 0)
			kill(pid, signal);
		else
			goto done;
	}
	waitpid(pid, &status, 0);
done:
	close(outFd);
	close(errFd);
	r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r.out = readFile(outPath);
	r.err = readFile(errPath);
	return r;
}

std::map<std::string, virtsnap::Json> byDisk(const virtsnap::Json &doc)
{
	std::map<std::string, virtsnap::Json> out;
	virtsnap::Json list = doc.get("Snapshots");
	for (size_t i = 0; i < list.size(); i++)
		out[list.at(i).getString("Disk").value_or("")] = list.at(i);
	return out;
}

} // namespace virtsnap::test
