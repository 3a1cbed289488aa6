// QmpClient against a scripted fake QEMU: framing, id matching, events,
// errors and timeouts, independent of a real QEMU.
#include <gtest/gtest.h>

#include <chrono>

#include "qmp/qmp_client.h"
#include "tests/qmp/fake_peer.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using virtsnap::Json;
using qmp::QmpClient;

class QmpClientTest : public FakePeerTest<QmpClient>
{
protected:
	QmpClientTest() : FakePeerTest("vs-qmp", "qmp.sock") {}
};

TEST_F(QmpClientTest, ConnectReadsGreetingAndNegotiatesCapabilities)
{
	peer.greet();
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	EXPECT_EQ(client->version().getInt("major"), 7);
	EXPECT_EQ(client->version().getInt("minor"), 2);
	EXPECT_EQ(peer.finish(), "");
	ASSERT_EQ(peer.received().size(), 1u);
	const Json &caps = peer.received()[0];
	EXPECT_EQ(caps.getString("execute"), "qmp_capabilities");
	EXPECT_FALSE(caps.has("arguments")) << caps.dump();
	EXPECT_TRUE(caps.getInt("id").has_value()) << caps.dump();
}

TEST_F(QmpClientTest, ExecuteSendsArgumentsAndReturnsTheReturnMember)
{
	peer.greet().expect("query-block-jobs").reply(R"([{"device": "job0", "offset": 42}])");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	Json args = Json::object();
	args.set("flag", Json::boolean(true)).set("path", Json::string("/a/b"));
	auto result = client->execute("query-block-jobs", args);
	ASSERT_TRUE(result) << result.error().toString();
	ASSERT_TRUE(result->isArray());
	ASSERT_EQ(result->size(), 1u);
	EXPECT_EQ(result->at(0).getString("device"), "job0");
	EXPECT_EQ(result->at(0).getInt("offset"), 42);
	EXPECT_EQ(peer.finish(), "");
	ASSERT_EQ(peer.received().size(), 2u);
	EXPECT_EQ(peer.received()[1].get("arguments").getString("path"), "/a/b");
	EXPECT_EQ(peer.received()[1].get("arguments").getBool("flag"), true);
	EXPECT_NE(peer.received()[1].getInt("id"), peer.received()[0].getInt("id"));
}

TEST_F(QmpClientTest, MessagesSplitIntoSingleBytesAreReassembled)
{
	peer.send(R"({"QMP": {"version": {"qemu": {"micro": 1, "minor": 0, "major": 8}}, "capabilities": []}})"
		  "\r\n",
		  1, 1ms);
	peer.expect("qmp_capabilities").send("{\"return\": {}, \"id\": @ID@}\r\n", 1, 1ms);
	peer.expect("query-status")
		.send("{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": @ID@}\r\n", 1, 1ms);
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	EXPECT_EQ(client->version().getInt("major"), 8);
	auto status = client->execute("query-status");
	ASSERT_TRUE(status) << status.error().toString();
	EXPECT_EQ(status->getString("status"), "running");
	EXPECT_EQ(status->getBool("running"), true);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, MultiByteCharactersSplitBetweenReadsSurvive)
{
	const std::string desc = "Could not open '/d\xc3\xa9j\xc3\xa0/\xe2\x82\xac.qcow2'";
	peer.greet().expect("blockdev-add").send(
		"{\"error\": {\"class\": \"GenericError\", \"desc\": \"" + desc + "\"}, \"id\": @ID@}\r\n", 1, 1ms);
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto result = client->execute("blockdev-add");
	ASSERT_FALSE(result);
	EXPECT_EQ(result.error().errorClass, "GenericError");
	EXPECT_EQ(result.error().desc, desc);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, SeveralMessagesInOneWriteAreAllSeen)
{
	peer.greet().expect("stop").send(
		R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"})"
		"\r\n"
		R"({"event": "A", "data": {"n": 1}})"
		"\n\n  "
		R"({"return": {"done": true}, "id": @ID@})"
		"\r\n"
		R"({"event": "B", "data": {"n": 2}})"
		"\r\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto result = client->execute("stop");
	ASSERT_TRUE(result) << result.error().toString();
	EXPECT_EQ(result->getBool("done"), true);
	// The event after the reply came in the same write: already buffered.
	auto b = client->waitEvent("B", {}, 1000ms);
	ASSERT_TRUE(b) << b.error().toString();
	EXPECT_EQ(b->data.getInt("n"), 2);
	ASSERT_EQ(client->pendingEvents().size(), 2u);
	EXPECT_EQ(client->pendingEvents()[0].name, "STOP");
	EXPECT_EQ(client->pendingEvents()[1].name, "A");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, MessageBoundariesInsideReadsDoNotMatter)
{
	std::string burst;
	for (int i = 0; i < 20; i++)
		burst += R"({"event": "TICK", "data": {"i": )" + std::to_string(i) + "}}\r\n";
	burst += "{\"return\": 7, \"id\": @ID@}\r\n";
	// 13-byte pieces cut every message at a different place.
	peer.greet().expect("query-ticks").send(burst, 13, 1ms);
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto result = client->execute("query-ticks");
	ASSERT_TRUE(result) << result.error().toString();
	EXPECT_EQ(result->asInt(), 7);
	ASSERT_EQ(client->pendingEvents().size(), 20u);
	for (int i = 0; i < 20; i++)
		EXPECT_EQ(client->pendingEvents()[i].data.getInt("i"), i);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, EventsBeforeReplyAreQueuedInOrder)
{
	peer.greet()
		.expect("cont")
		.send(R"({"event": "FIRST", "data": {"n": 1}, "timestamp": {"seconds": 5, "microseconds": 0}})"
		      "\r\n")
		.pause(20ms)
		.send(R"({"event": "SECOND", "data": {"n": 2}})"
		      "\r\n")
		.pause(20ms)
		.send(R"({"event": "FIRST", "data": {"n": 3}})"
		      "\r\n")
		.reply();
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	ASSERT_TRUE(client->execute("cont"));
	ASSERT_EQ(client->pendingEvents().size(), 3u);

	// waitEvent takes the first match and leaves the others in order.
	auto second = client->waitEvent("SECOND", {}, 100ms);
	ASSERT_TRUE(second) << second.error().toString();
	EXPECT_EQ(second->data.getInt("n"), 2);
	auto third = client->waitEvent("FIRST", [](const Json &data) { return data.getInt("n") == 3; }, 100ms);
	ASSERT_TRUE(third) << third.error().toString();
	EXPECT_EQ(third->data.getInt("n"), 3);

	auto first = client->nextEvent(100ms);
	ASSERT_TRUE(first) << first.error().toString();
	EXPECT_EQ(first->name, "FIRST");
	EXPECT_EQ(first->data.getInt("n"), 1);
	EXPECT_EQ(first->raw.get("timestamp").getInt("seconds"), 5);
	EXPECT_TRUE(client->pendingEvents().empty());
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, WaitEventWaitsForAMatchAndKeepsTheRest)
{
	peer.greet()
		.pause(50ms)
		.send(R"({"event": "JOB_STATUS_CHANGE", "data": {"id": "other", "status": "running"}})"
		      "\r\n")
		.pause(50ms)
		.send(R"({"event": "BLOCK_JOB_COMPLETED", "data": {"device": "other"}})"
		      "\r\n")
		.pause(50ms)
		.send(R"({"event": "BLOCK_JOB_COMPLETED", "data": {"device": "mine", "len": 9}})"
		      "\r\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto event = client->waitEvent(
		"BLOCK_JOB_COMPLETED", [](const Json &data) { return data.getString("device") == "mine"; }, 5000ms);
	ASSERT_TRUE(event) << event.error().toString();
	EXPECT_EQ(event->data.getInt("len"), 9);
	ASSERT_EQ(client->pendingEvents().size(), 2u);
	EXPECT_EQ(client->pendingEvents()[0].name, "JOB_STATUS_CHANGE");
	EXPECT_EQ(client->pendingEvents()[1].data.getString("device"), "other");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, NextEventTimesOutWhenNothingComes)
{
	peer.greet();
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto start = Clock::now();
	auto event = client->waitEvent("SHUTDOWN", {}, 200ms);
	auto elapsed = since(start);
	ASSERT_FALSE(event);
	EXPECT_EQ(event.error().errorClass, "Timeout");
	EXPECT_NE(event.error().desc.find("SHUTDOWN"), std::string::npos) << event.error().desc;
	EXPECT_GE(elapsed, 200ms);
	EXPECT_LT(elapsed, 200ms + kMargin);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, ErrorReplySurfacesClassAndDesc)
{
	peer.greet().expect("blockdev-del").replyError("DeviceNotFound", "Node 'nope' not found");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto result = client->execute("blockdev-del", Json::object().set("node-name", Json::string("nope")));
	ASSERT_FALSE(result);
	EXPECT_EQ(result.error().errorClass, "DeviceNotFound");
	EXPECT_EQ(result.error().desc, "Node 'nope' not found");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, TimedOutCommandsLateReplyIsDiscarded)
{
	peer.greet()
		.expect("query-status")
		.pause(600ms)
		.send("{\"return\": {\"status\": \"late\"}, \"id\": @ID@}\r\n")
		.expect("query-name")
		.reply(R"({"name": "vm1"})");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);

	auto start = Clock::now();
	auto status = client->execute("query-status", Json(), 200ms);
	auto elapsed = since(start);
	ASSERT_FALSE(status);
	EXPECT_EQ(status.error().errorClass, "Timeout");
	EXPECT_NE(status.error().desc.find("query-status"), std::string::npos) << status.error().desc;
	EXPECT_NE(status.error().desc.find("200 ms"), std::string::npos) << status.error().desc;
	EXPECT_GE(elapsed, 200ms);
	EXPECT_LT(elapsed, 200ms + kMargin);

	// The late reply reaches the client first and must not be taken as this one's.
	auto name = client->execute("query-name", Json(), 5000ms);
	ASSERT_TRUE(name) << name.error().toString();
	EXPECT_EQ(name->getString("name"), "vm1");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, RepliesWithOtherIdsAreDiscarded)
{
	peer.greet().expect("query-name").send(
		R"({"return": {"name": "wrong"}, "id": 999999})"
		"\r\n"
		R"({"error": {"class": "GenericError", "desc": "wrong too"}, "id": "x"})"
		"\r\n"
		"{\"return\": {\"name\": \"right\"}, \"id\": @ID@}\r\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto name = client->execute("query-name");
	ASSERT_TRUE(name) << name.error().toString();
	EXPECT_EQ(name->getString("name"), "right");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, LargeAndDeeplyNestedRepliesParse)
{
	std::string big(300000, 'x');
	std::string nested = "1";
	for (int i = 0; i < 200; i++)
		nested = "{\"backing-image\": " + nested + "}";
	peer.greet()
		.expect("big")
		.send("{\"return\": \"" + big + "\", \"id\": @ID@}\r\n", 4096)
		.expect("nested")
		.reply(nested);
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto result = client->execute("big");
	ASSERT_TRUE(result) << result.error().toString();
	EXPECT_EQ(result->asString(), big);
	auto deep = client->execute("nested");
	ASSERT_TRUE(deep) << deep.error().toString();
	Json node = *deep;
	int depth = 0;
	while (node.isObject()) {
		node = node.get("backing-image");
		depth++;
	}
	EXPECT_EQ(depth, 200);
	EXPECT_EQ(node.asInt(), 1);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, GarbageIsAProtocolErrorAndTheConnectionStaysDead)
{
	peer.greet().expect("query-status").send("this is not JSON\r\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto status = client->execute("query-status", Json(), 5000ms);
	ASSERT_FALSE(status);
	EXPECT_EQ(status.error().errorClass, "ProtocolError");
	EXPECT_NE(status.error().desc.find(peer.path()), std::string::npos) << status.error().desc;
	EXPECT_EQ(status.error().desc.find('\n'), std::string::npos) << status.error().desc;

	auto start = Clock::now();
	auto again = client->execute("query-status", Json(), 5000ms);
	ASSERT_FALSE(again);
	EXPECT_TRUE(again.error().errorClass == "ProtocolError" ||
		    again.error().errorClass == "ConnectionClosed")
		<< again.error().toString();
	auto event = client->nextEvent(5000ms);
	ASSERT_FALSE(event);
	EXPECT_NE(event.error().errorClass, "Timeout");
	EXPECT_LT(since(start), 100ms);
	// The peer checks the client sent nothing after the garbage.
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, BrokenJsonInsideAMessageIsAProtocolError)
{
	peer.greet().expect("query-status").send("{\"return\": {\"status\": ]}\r\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto status = client->execute("query-status", Json(), 5000ms);
	ASSERT_FALSE(status);
	EXPECT_EQ(status.error().errorClass, "ProtocolError");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, NonObjectMessageIsAProtocolError)
{
	peer.greet().expect("query-status").send("[1, 2, 3]\r\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto status = client->execute("query-status", Json(), 5000ms);
	ASSERT_FALSE(status);
	EXPECT_EQ(status.error().errorClass, "ProtocolError");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, PeerClosingIsConnectionClosed)
{
	peer.greet().expect("query-status").hangUp();
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto status = client->execute("query-status", Json(), 5000ms);
	ASSERT_FALSE(status);
	EXPECT_EQ(status.error().errorClass, "ConnectionClosed");
	EXPECT_NE(status.error().desc.find(peer.path()), std::string::npos) << status.error().desc;

	auto start = Clock::now();
	auto again = client->execute("query-status", Json(), 5000ms);
	ASSERT_FALSE(again);
	EXPECT_EQ(again.error().errorClass, "ConnectionClosed");
	EXPECT_LT(since(start), 100ms);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, PeerClosingBeforeGreetingIsConnectionClosed)
{
	peer.hangUp();
	peer.start();
	auto client = QmpClient::connect(peer.path(), 5000ms);
	ASSERT_FALSE(client);
	EXPECT_EQ(client.error().errorClass, "ConnectionClosed");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, SilentPeerTimesOutWaitingForTheGreeting)
{
	peer.start();
	auto start = Clock::now();
	auto client = QmpClient::connect(peer.path(), 300ms);
	auto elapsed = since(start);
	ASSERT_FALSE(client);
	EXPECT_EQ(client.error().errorClass, "Timeout");
	EXPECT_NE(client.error().desc.find(peer.path()), std::string::npos) << client.error().desc;
	EXPECT_GE(elapsed, 300ms);
	EXPECT_LT(elapsed, 300ms + kMargin);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, WrongGreetingIsAProtocolError)
{
	peer.send("{\"return\": {}}\r\n");
	peer.start();
	auto client = QmpClient::connect(peer.path(), 5000ms);
	ASSERT_FALSE(client);
	EXPECT_EQ(client.error().errorClass, "ProtocolError");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(QmpClientTest, CapabilitiesErrorFailsConnect)
{
	peer.send(R"({"QMP": {"version": {}, "capabilities": []}})"
		  "\r\n")
		.expect("qmp_capabilities")
		.replyError("CommandNotFound", "no caps here");
	peer.start();
	auto client = QmpClient::connect(peer.path(), 5000ms);
	ASSERT_FALSE(client);
	EXPECT_EQ(client.error().errorClass, "CommandNotFound");
	EXPECT_EQ(peer.finish(), "");
}

TEST(QmpClientConnect, MissingSocketIsConnectionFailedNamingThePath)
{
	TempDir tmp{"vs-qmp"};
	std::string path = tmp.file("does-not-exist.sock");
	auto client = QmpClient::connect(path, 1000ms);
	ASSERT_FALSE(client);
	EXPECT_EQ(client.error().errorClass, "ConnectionFailed");
	EXPECT_NE(client.error().desc.find(path), std::string::npos) << client.error().desc;
}

} // namespace
} // namespace virtsnap::test
