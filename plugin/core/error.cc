#include "error.h"

#include <cerrno>
#include <cstring>

namespace virtsnap {

std::unexpected<Error> failErrno(const std::string &what, int err)
{
	const char *code = (err == ENOSPC || err == EDQUOT)  ? errc::kNoSpace
			   : (err == EACCES || err == EPERM) ? errc::kAccessDenied
							     : errc::kIo;
	return fail(code, what + ": " + std::strerror(err));
}

} // namespace virtsnap
