#include "test_guest.h"

#include "tests/support/test_env.h"

namespace virtsnap::test {

// Built once per test binary; build-guest caches across runs too.
const std::string &guestCache(std::string *error)
{
	static std::string cache, buildError;
	static bool built = false;
	if (!built) {
		built = true;
		std::string out;
		int rc = runCommand({sourceDir() + "/tests/guest/build-guest"}, &out);
		while (!out.empty() && out.back() == '\n')
			out.pop_back();
		if (rc == 0)
			cache = out.substr(out.rfind('\n') + 1);
		else
			buildError = "build-guest failed: " + out.substr(out.size() > 2000 ? out.size() - 2000 : 0);
	}
	*error = buildError;
	return cache;
}

} // namespace virtsnap::test
