#include "cli_fixture.h"

#include <filesystem>

namespace virtsnap::test {

std::string CliTest::workRoot()
{
	std::string dir = tmp_.file("tmp");
	std::filesystem::create_directories(dir);
	return dir;
}

CliResult CliTest::cli(std::vector<std::string> args, const std::string &socket, const std::string &keyFile)
{
	args.insert(args.begin(), {"--store", storeDir_, "--key-file", keyFile.empty() ? keyFile_ : keyFile});
	return runVirtsnap(args, {"TMPDIR=" + workRoot(), "VIRTSNAP_SOCKET=" + (socket.empty() ? cliSocket_ : socket)});
}

} // namespace virtsnap::test
