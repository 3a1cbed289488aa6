// GuestAgentClient against a scripted fake agent: the 0xFF-delimited sync,
// stale replies, hung agents and resynchronisation.
#include <gtest/gtest.h>

#include <chrono>

#include "qmp/guest_agent_client.h"
#include "tests/qmp/fake_peer.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using qmp::GuestAgentClient;
using virtsnap::Json;

// What qemu-ga sends for guest-sync-delimited: the delimiter, then the id.
const std::string kSyncReply = "\xff{\"return\": @ID@}\n";

class GuestAgentClientTest : public FakePeerTest<GuestAgentClient>
{
protected:
	GuestAgentClientTest() : FakePeerTest("vs-qga", "qga.sock") {}
};

TEST_F(GuestAgentClientTest, ConnectSyncsWithDelimiterAndRandomId)
{
	peer.expectSync().send(kSyncReply).expect("guest-info").send(R"({"return": {"version": "7.2.0"}})"
								       "\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto info = client->execute("guest-info");
	ASSERT_TRUE(info) << info.error().toString();
	EXPECT_EQ(info->getString("version"), "7.2.0");
	EXPECT_EQ(peer.finish(), "");
	ASSERT_EQ(peer.received().size(), 2u);
	auto id = peer.received()[0].get("arguments").getInt("id");
	ASSERT_TRUE(id);
	EXPECT_GT(*id, 0);
	// Agent commands carry no id; the agent would reject an unknown member.
	EXPECT_FALSE(peer.received()[1].has("id"));
	EXPECT_FALSE(peer.received()[1].has("arguments"));
}

TEST_F(GuestAgentClientTest, SyncIdsDiffer)
{
	peer.expectSync().send(kSyncReply).expectSync().send(kSyncReply);
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto synced = client->sync(5000ms);
	ASSERT_TRUE(synced) << synced.error().toString();
	EXPECT_EQ(peer.finish(), "");
	ASSERT_EQ(peer.received().size(), 2u);
	EXPECT_NE(peer.received()[0].get("arguments").getInt("id"),
		  peer.received()[1].get("arguments").getInt("id"));
}

TEST_F(GuestAgentClientTest, StaleRepliesBeforeTheSyncReplyAreDiscarded)
{
	peer.expectSync()
		.send("{\"return\": {\"stale\": 1}}\n"
		      "partial garbage {\"ret"
		      "\xff{\"return\": 424242}\n" // an earlier sync's answer
		      "\xff{\"return\": @ID@}\n",
		      5, 1ms)
		.expect("guest-get-time")
		.send("{\"return\": 1234567}\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto time = client->execute("guest-get-time");
	ASSERT_TRUE(time) << time.error().toString();
	EXPECT_EQ(time->asInt(), 1234567);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, StaleSyncReplyAndTheRightOneInOneWrite)
{
	// Both replies and the delimiters arrive in one read; a delimiter
	// right after the last reply must not spoil it either.
	peer.expectSync()
		.send("\xff{\"return\": 77}\n\xff{\"return\": @ID@}\n")
		.expect("guest-ping")
		.send("{\"return\": {}}\n\xff");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto ping = client->execute("guest-ping");
	ASSERT_TRUE(ping) << ping.error().toString();
	EXPECT_TRUE(ping->isObject());
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, ByteByByteSyncReply)
{
	peer.expectSync().send("{\"return\": 1}\n" + kSyncReply, 1, 1ms);
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, ErrorReplySurfacesClassAndDesc)
{
	peer.expectSync()
		.send(kSyncReply)
		.expect("guest-fsfreeze-freeze")
		.send(R"({"error": {"class": "GenericError", "desc": "failed to freeze /: Device busy"}})"
		      "\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto result = client->execute("guest-fsfreeze-freeze");
	ASSERT_FALSE(result);
	EXPECT_EQ(result.error().errorClass, "GenericError");
	EXPECT_EQ(result.error().desc, "failed to freeze /: Device busy");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, HungAgentTimesOut)
{
	peer.expectSync();
	peer.start();
	auto start = Clock::now();
	auto client = GuestAgentClient::connect(peer.path(), 300ms);
	auto elapsed = since(start);
	ASSERT_FALSE(client);
	EXPECT_EQ(client.error().errorClass, "Timeout");
	EXPECT_NE(client.error().desc.find("guest-sync-delimited"), std::string::npos) << client.error().desc;
	EXPECT_NE(client.error().desc.find("300 ms"), std::string::npos) << client.error().desc;
	EXPECT_GE(elapsed, 300ms);
	EXPECT_LT(elapsed, 300ms + kMargin);
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, ResyncsAfterATimeoutAndDropsTheLateReply)
{
	peer.expectSync()
		.send(kSyncReply)
		.expect("guest-fsfreeze-freeze")
		.pause(600ms)
		.send("{\"return\": 3}\n") // the late answer to the freeze
		.expectSync()
		.send(kSyncReply)
		.expect("guest-fsfreeze-status")
		.send("{\"return\": \"thawed\"}\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);

	auto start = Clock::now();
	auto frozen = client->execute("guest-fsfreeze-freeze", Json(), 200ms);
	auto elapsed = since(start);
	ASSERT_FALSE(frozen);
	EXPECT_EQ(frozen.error().errorClass, "Timeout");
	EXPECT_NE(frozen.error().desc.find("guest agent did not answer guest-fsfreeze-freeze within 200 ms"),
		  std::string::npos)
		<< frozen.error().desc;
	EXPECT_GE(elapsed, 200ms);
	EXPECT_LT(elapsed, 200ms + kMargin);

	auto status = client->execute("guest-fsfreeze-status", Json(), 5000ms);
	ASSERT_TRUE(status) << status.error().toString();
	EXPECT_EQ(status->asString(), "thawed");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, PostQueuesACommandBehindAHungOneWithoutWaiting)
{
	peer.expectSync()
		.send(kSyncReply)
		.expect("guest-fsfreeze-freeze")
		.expectDelimiter()
		.expect("guest-fsfreeze-thaw")
		// The hung agent wakes up and answers both, then the resync.
		.send("{\"return\": 2}\n{\"return\": 2}\n")
		.expectSync()
		.send(kSyncReply)
		.expect("guest-fsfreeze-status")
		.send("{\"return\": \"thawed\"}\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto frozen = client->execute("guest-fsfreeze-freeze", Json(), 200ms);
	ASSERT_FALSE(frozen);
	EXPECT_EQ(frozen.error().errorClass, "Timeout");

	auto start = Clock::now();
	auto posted = client->post("guest-fsfreeze-thaw");
	EXPECT_TRUE(posted) << posted.error().toString();
	EXPECT_LT(since(start), 100ms);

	auto status = client->execute("guest-fsfreeze-status", Json(), 5000ms);
	ASSERT_TRUE(status) << status.error().toString();
	EXPECT_EQ(status->asString(), "thawed");
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, ResyncsAfterAProtocolError)
{
	peer.expectSync()
		.send(kSyncReply)
		.expect("guest-ping")
		.send("nonsense\n")
		.expectSync()
		.send(kSyncReply)
		.expect("guest-ping")
		.send("{\"return\": {}}\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto ping = client->execute("guest-ping", Json(), 5000ms);
	ASSERT_FALSE(ping);
	EXPECT_EQ(ping.error().errorClass, "ProtocolError");
	EXPECT_NE(ping.error().desc.find(peer.path()), std::string::npos) << ping.error().desc;
	ping = client->execute("guest-ping", Json(), 5000ms);
	ASSERT_TRUE(ping) << ping.error().toString();
	EXPECT_TRUE(ping->isObject());
	EXPECT_EQ(peer.finish(), "");
}

TEST_F(GuestAgentClientTest, ArgumentsAreSent)
{
	peer.expectSync()
		.send(kSyncReply)
		.expect("guest-fsfreeze-freeze-list")
		.send("{\"return\": 2}\n");
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	Json mounts = Json::array();
	mounts.append(Json::string("/")).append(Json::string("/data"));
	auto frozen = client->execute("guest-fsfreeze-freeze-list", Json::object().set("mountpoints", mounts));
	ASSERT_TRUE(frozen) << frozen.error().toString();
	EXPECT_EQ(frozen->asInt(), 2);
	EXPECT_EQ(peer.finish(), "");
	ASSERT_EQ(peer.received().size(), 2u);
	Json sent = peer.received()[1].get("arguments").get("mountpoints");
	ASSERT_EQ(sent.size(), 2u);
	EXPECT_EQ(sent.at(1).asString(), "/data");
}

TEST_F(GuestAgentClientTest, PeerClosingIsConnectionClosed)
{
	peer.expectSync().send(kSyncReply).expect("guest-ping").hangUp();
	peer.start();
	auto client = connect();
	ASSERT_TRUE(client);
	auto ping = client->execute("guest-ping", Json(), 5000ms);
	ASSERT_FALSE(ping);
	EXPECT_EQ(ping.error().errorClass, "ConnectionClosed");
	EXPECT_EQ(peer.finish(), "");
}

TEST(GuestAgentClientConnect, MissingSocketIsConnectionFailedNamingThePath)
{
	TempDir tmp{"vs-qga"};
	std::string path = tmp.file("missing.sock");
	auto client = GuestAgentClient::connect(path, 1000ms);
	ASSERT_FALSE(client);
	EXPECT_EQ(client.error().errorClass, "ConnectionFailed");
	EXPECT_NE(client.error().desc.find(path), std::string::npos) << client.error().desc;
}

} // namespace
} // namespace virtsnap::test
