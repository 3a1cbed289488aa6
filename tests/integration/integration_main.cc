// The integration tests' main. VIRTSNAP_TEST_PART picks one part of them:
// "libvirt" (the suites named Libvirt*, which share libvirtd, its hook
// directory and /var/tmp's scratch directories) or "other" (everything
// else, which uses QEMU directly). The two parts share nothing else, so
// meson runs them side by side: most of their time is spent waiting on
// guests and timeouts, and the suite's wall time nearly halves. meson
// splits "other" once more with gtest's sharding variables, for the same
// reason. Without the variable every test runs, as before. A --gtest_filter
// given on the command line still applies within the part.
#include <cstdlib>
#include <iostream>
#include <string>

#include <gtest/gtest.h>

namespace {

bool isLibvirtSuite(const std::string &suite)
{
	// A parameterised suite is named "Instantiation/Suite".
	const size_t slash = suite.find('/');
	return suite.compare(slash == std::string::npos ? 0 : slash + 1, 7, "Libvirt") == 0;
}

// Adds the suites outside `part` to the filter's negative patterns.
void restrictToPart(bool libvirtPart)
{
	std::string excluded;
	const testing::UnitTest *unit = testing::UnitTest::GetInstance();
	for (int i = 0; i < unit->total_test_suite_count(); i++) {
		const std::string suite = unit->GetTestSuite(i)->name();
		if (isLibvirtSuite(suite) != libvirtPart)
			excluded += (excluded.empty() ? "" : ":") + suite + ".*";
	}
	if (excluded.empty())
		return;
	std::string filter = GTEST_FLAG_GET(filter);
	filter += (filter.find('-') == std::string::npos ? "-" : ":") + excluded;
	GTEST_FLAG_SET(filter, filter);
}

} // namespace

int main(int argc, char **argv)
{
	testing::InitGoogleTest(&argc, argv);
	if (const char *part = std::getenv("VIRTSNAP_TEST_PART"); part && *part) {
		const std::string name = part;
		if (name != "libvirt" && name != "other") {
			std::cerr << "VIRTSNAP_TEST_PART is \"" << name << "\": it must be libvirt or other\n";
			return 2;
		}
		restrictToPart(name == "libvirt");
	}
	return RUN_ALL_TESTS();
}
