// Product codes as the command line, instance records and the catalog
// write them: "ID" or "ID:TYPE".
#include <gtest/gtest.h>

#include "core/product_code.h"
#include "tests/support/core_test_util.h"

namespace virtsnap::core::test {
namespace {

using virtsnap::test::describe;

TEST(ProductCodeTest, IdAloneIsMarketplaceAndATypeMayBeGiven)
{
	auto plain = parseProductCode("8l7pawpyjfh0u9p6aefa8ngmg");
	ASSERT_TRUE(plain) << describe(plain);
	EXPECT_EQ(*plain, (ProductCode{"8l7pawpyjfh0u9p6aefa8ngmg", "marketplace"}));
	auto devpay = parseProductCode("ABC123:devpay");
	ASSERT_TRUE(devpay) << describe(devpay);
	EXPECT_EQ(*devpay, (ProductCode{"ABC123", "devpay"}));
	EXPECT_EQ(toString(*devpay), "ABC123:devpay");
	auto again = parseProductCode(toString(*plain));
	ASSERT_TRUE(again) << describe(again);
	EXPECT_EQ(*again, *plain);
}

TEST(ProductCodeTest, AnythingElseIsInvalidParameterValue)
{
	for (const char *bad : {"", ":devpay", "abc:", "abc:paid", "abc:devpay:x", "ab-c", "ab c", "abc\n",
				"x:marketplace\xc3\xa9"}) {
		auto code = parseProductCode(bad);
		ASSERT_FALSE(code) << "'" << bad << "'";
		EXPECT_EQ(code.error().code, errc::kInvalidParameterValue) << bad;
		EXPECT_EQ(code.error().message.find('\n'), std::string::npos) << code.error().message;
	}
	EXPECT_TRUE(parseProductCode(std::string(64, 'a')));
	EXPECT_FALSE(parseProductCode(std::string(65, 'a')));
}

TEST(ProductCodeTest, AddingKeepsOrderAndOneCodePerId)
{
	std::vector<ProductCode> codes = {{"a", "marketplace"}, {"b", "devpay"}};
	addProductCodes(codes, {{"b", "marketplace"}, {"c", "marketplace"}, {"a", "devpay"}});
	EXPECT_EQ(codes, (std::vector<ProductCode>{{"a", "marketplace"}, {"b", "devpay"}, {"c", "marketplace"}}));
}

} // namespace
} // namespace virtsnap::core::test
