#include "secret_memfd.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <span>

#include "file_util.h"
#include "process.h"

namespace virtsnap {

Result<UniqueFd> secretMemfd(const std::string &secret)
{
	UniqueFd fd(::memfd_create("virtsnap-secret", MFD_CLOEXEC | MFD_ALLOW_SEALING));
	if (fd.get() < 0)
		return failErrno("create a memfd for a secret", errno);
	VS_TRY(pwriteAll(fd.get(), std::span(reinterpret_cast<const uint8_t *>(secret.data()), secret.size()), 0));
	// Nobody, the child included, changes it after this.
	(void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	return fd;
}

std::string secretObject(const std::string &id, int fd)
{
	return "secret,id=" + id + ",file=" + heldOpenPath(fd) + ",format=raw";
}

} // namespace virtsnap
