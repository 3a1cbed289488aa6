#include "work_dir.h"

#include <stdlib.h>

#include <cerrno>

namespace virtsnap::engine {

Result<std::unique_ptr<WorkDir>> WorkDir::create()
{
	const char *tmp = std::getenv("TMPDIR");
	std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/virtsnap-XXXXXX";
	if (pattern.size() > 80)
		return fail(errc::kInvalidParameterValue,
			    "TMPDIR is too long for an NBD socket path (unix sockets take 108 bytes)");
	if (!::mkdtemp(pattern.data()))
		return failErrno("create a work directory in " + pattern.substr(0, pattern.rfind('/')), errno);
	return std::unique_ptr<WorkDir>(new WorkDir(pattern));
}

WorkDir::~WorkDir()
{
	std::error_code ec;
	std::filesystem::remove_all(path_, ec);
}

} // namespace virtsnap::engine
