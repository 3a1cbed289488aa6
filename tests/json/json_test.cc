#include <gtest/gtest.h>

#include "json/json.h"

namespace virtsnap {
namespace {

TEST(Json, ParseAndAccessObject)
{
	auto json = Json::parse(R"( {"s": "text", "i": -5, "b": true, "n": null, "a": [1, "two"], "o": {"k": 1}} )");
	ASSERT_TRUE(json);
	EXPECT_TRUE(json->isObject());
	EXPECT_EQ(json->getString("s"), "text");
	EXPECT_EQ(json->getInt("i"), -5);
	EXPECT_EQ(json->getBool("b"), true);
	EXPECT_TRUE(json->has("n"));
	EXPECT_TRUE(json->get("n").isNull());
	EXPECT_FALSE(json->has("missing"));
	EXPECT_TRUE(json->get("missing").isNull());
	// Typed getters refuse other types instead of converting.
	EXPECT_EQ(json->getString("i"), std::nullopt);
	EXPECT_EQ(json->getInt("s"), std::nullopt);
	EXPECT_EQ(json->getBool("i"), std::nullopt);
	ASSERT_TRUE(json->get("a").isArray());
	EXPECT_EQ(json->get("a").size(), 2u);
	EXPECT_EQ(json->get("a").at(0).asInt(), 1);
	EXPECT_EQ(json->get("a").at(1).asString(), "two");
	EXPECT_TRUE(json->get("a").at(2).isNull());
	EXPECT_EQ(json->get("o").getInt("k"), 1);
	std::vector<std::string> keys = json->keys();
	EXPECT_EQ(keys, (std::vector<std::string>{"s", "i", "b", "n", "a", "o"}));
}

TEST(Json, ParseRejectsInvalidText)
{
	EXPECT_FALSE(Json::parse(""));
	EXPECT_FALSE(Json::parse("   "));
	EXPECT_FALSE(Json::parse("{"));
	EXPECT_FALSE(Json::parse("{\"a\": 1} x"));
	EXPECT_FALSE(Json::parse("{\"a\": 1}{\"b\": 2}"));
	EXPECT_FALSE(Json::parse("['a']")); // json-c strict mode still accepts 'a' as a key
	EXPECT_FALSE(Json::parse("[1, 2,]"));
	EXPECT_FALSE(Json::parse("garbage"));
}

TEST(Json, ParseScalars)
{
	auto number = Json::parse("42");
	ASSERT_TRUE(number);
	EXPECT_EQ(number->asInt(), 42);
	auto text = Json::parse("\"a/b\"");
	ASSERT_TRUE(text);
	EXPECT_EQ(text->asString(), "a/b");
	auto null = Json::parse("null");
	ASSERT_TRUE(null);
	EXPECT_TRUE(null->isNull());
	auto big = Json::parse("18446744073709551615");
	ASSERT_TRUE(big);
	EXPECT_EQ(big->asInt(), INT64_MAX);
}

TEST(Json, BuildAndDump)
{
	Json args;
	args.set("node-name", Json::string("fmt-vda")).set("size", Json::integer(1LL << 40));
	Json list;
	list.append(Json::boolean(false)).append(Json());
	args.set("list", list);
	EXPECT_EQ(args.dump(), R"({"node-name":"fmt-vda","size":1099511627776,"list":[false,null]})");
	EXPECT_EQ(Json().dump(), "null");
	EXPECT_EQ(Json::string("/dev/\"x\"").dump(), R"("/dev/\"x\"")");
	auto back = Json::parse(args.dump(true));
	ASSERT_TRUE(back);
	EXPECT_EQ(back->dump(), args.dump());
}

TEST(Json, CopiesShareAndOutliveTheOriginal)
{
	Json copy;
	{
		Json original = Json::object();
		original.set("k", Json::string("v"));
		copy = original;
		Json moved = std::move(original);
		EXPECT_TRUE(original.isNull());
		moved.set("k2", Json::integer(2));
	}
	EXPECT_EQ(copy.getString("k"), "v");
	EXPECT_EQ(copy.getInt("k2"), 2);
	Json child = copy.get("k");
	copy = Json();
	EXPECT_EQ(child.asString(), "v");
}

TEST(Json, ScalarAccessorsOnOtherTypes)
{
	Json text = Json::string("5");
	EXPECT_EQ(text.asInt(), 0);
	EXPECT_FALSE(text.asBool());
	EXPECT_EQ(Json::integer(5).asString(), "");
	EXPECT_EQ(text.size(), 0u);
	EXPECT_TRUE(text.get("x").isNull());
	text.set("x", Json::integer(1)); // not an object: ignored
	EXPECT_EQ(text.asString(), "5");
}

} // namespace
} // namespace virtsnap
