#include "acting_as.h"

#include <pwd.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include <cstdlib>

namespace virtsnap {

Result<ActingAs> ActingAs::caller(const std::string &ownerId)
{
	if (ownerId.empty())
		return ActingAs(false);
	char *end = nullptr;
	unsigned long uid = std::strtoul(ownerId.c_str(), &end, 10);
	if (*end != '\0')
		return fail(errc::kInternal, "the caller's uid '" + ownerId + "' is not a number");
	if (::geteuid() != 0 || uid == 0)
		return ActingAs(false);
	struct passwd pw {};
	struct passwd *found = nullptr;
	char buf[4096];
	if (::getpwuid_r(uid_t(uid), &pw, buf, sizeof(buf), &found) != 0 || !found)
		return fail(errc::kAccessDenied, "uid " + ownerId + " has no account here to write files as");
	// The group first: once the uid is not root's, the fsgid could not be
	// set any more. (Each call returns the previous value, not an error.)
	::setfsgid(found->pw_gid);
	::setfsuid(uid_t(uid));
	if (::setfsuid(uid_t(-1)) != int(uid)) {
		::setfsuid(0);
		::setfsgid(0);
		return fail(errc::kInternal, "cannot write files as uid " + ownerId);
	}
	return ActingAs(true);
}

ActingAs::~ActingAs()
{
	if (!active_)
		return;
	::setfsuid(0);
	::setfsgid(0);
}

} // namespace virtsnap
