#include <gtest/gtest.h>

#include "core/arguments.h"
#include "tests/support/core_test_util.h"

namespace virtsnap {
namespace {

using test::codeOf;

const std::vector<OptionSpec> kSpecs = {{"qmp-socket"}, {"tag", true, true}, {"dry-run", false}};

TEST(ArgumentsFromJson, OptionsComeBackAsTheCommandLineGivesThem)
{
	auto a = Arguments::fromJson("gc", R"({"qmp-socket": ["/run/a"], "tag": ["a=b", "c=d"], "dry-run": [""]})",
				     kSpecs);
	ASSERT_TRUE(a) << a.error().message;
	EXPECT_EQ(a->get("qmp-socket"), "/run/a");
	EXPECT_EQ(a->all("tag"), (std::vector<std::string>{"a=b", "c=d"}));
	EXPECT_TRUE(a->has("dry-run"));
	auto again = Arguments::fromJson("gc", a->toJson(), kSpecs);
	ASSERT_TRUE(again);
	EXPECT_EQ(again->values(), a->values());
}

// Found by tests/fuzz (daemon-request): {"qmp-socket": []} was accepted, and
// get() then read the last of no values, out of bounds, in the daemon.
TEST(ArgumentsFromJson, AnOptionWithNoValueIsRefused)
{
	for (const char *json : {R"({"qmp-socket": []})", R"({"tag": []})", R"({"dry-run": []})"})
		EXPECT_EQ(codeOf(Arguments::fromJson("gc", json, kSpecs)), errc::kInvalidParameterValue) << json;
}

TEST(ArgumentsFromJson, UnknownOptionsAndNonStringValuesAreRefused)
{
	EXPECT_EQ(codeOf(Arguments::fromJson("gc", R"({"nope": ["x"]})", kSpecs)), errc::kInvalidParameterValue);
	EXPECT_EQ(codeOf(Arguments::fromJson("gc", R"({"qmp-socket": [1]})", kSpecs)), errc::kInvalidParameterValue);
	EXPECT_EQ(codeOf(Arguments::fromJson("gc", R"({"qmp-socket": ["a", "b"]})", kSpecs)),
		  errc::kInvalidParameterValue);
}

} // namespace
} // namespace virtsnap
