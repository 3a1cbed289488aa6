// QmpClient and the QemuInstance fixture against a real qemu-system-x86_64.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "qmp/guest_agent_client.h"
#include "qmp/qmp_client.h"
#include "tests/support/qemu_instance.h"
#include "tests/support/qemu_residue.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

using namespace std::chrono_literals;
using virtsnap::Json;
using qmp::QmpClient;

class RealQemuTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		REQUIRE_QEMU();
		disk_ = tmp_.file("vda.qcow2");
		std::string error;
		ASSERT_TRUE(createImage(disk_, "qcow2", "64M", &error)) << error;
		QemuOptions options;
		options.name = "vs-qmp-test";
		options.uuid = "6f1c0b4e-2d5a-4c1e-9f3b-8a7d6e5c4b3a";
		options.disks.push_back({.path = disk_, .format = "qcow2", .id = "vda", .bootIndex = 0});
		vm_ = QemuInstance::start(options, &error);
		ASSERT_TRUE(vm_) << error;
		auto client = QmpClient::connect(vm_->qmpSocket(), 10000ms);
		ASSERT_TRUE(client) << client.error().toString();
		client_ = std::move(*client);
	}

	TempDir tmp_{"vs-qemu-test"};
	std::string disk_;
	std::unique_ptr<QemuInstance> vm_;
	std::unique_ptr<QmpClient> client_;
};

TEST_F(RealQemuTest, QueryStatusAndName)
{
	EXPECT_EQ(client_->version().getInt("major").value_or(0) >= 7, true) << client_->version().dump();
	auto status = client_->execute("query-status");
	ASSERT_TRUE(status) << status.error().toString();
	EXPECT_EQ(status->getString("status"), "running");
	auto name = client_->execute("query-name");
	ASSERT_TRUE(name) << name.error().toString();
	EXPECT_EQ(name->getString("name"), "vs-qmp-test");
	auto uuid = client_->execute("query-uuid");
	ASSERT_TRUE(uuid) << uuid.error().toString();
	EXPECT_EQ(uuid->getString("UUID"), "6f1c0b4e-2d5a-4c1e-9f3b-8a7d6e5c4b3a");
}

TEST_F(RealQemuTest, QueryBlockFindsTheDisk)
{
	auto block = client_->execute("query-block");
	ASSERT_TRUE(block) << block.error().toString();
	ASSERT_TRUE(block->isArray()) << block->dump();
	bool found = false;
	for (size_t i = 0; i < block->size(); i++) {
		Json device = block->at(i);
		if (device.getString("qdev") != "/machine/peripheral/vda/virtio-backend")
			continue;
		found = true;
		Json inserted = device.get("inserted");
		EXPECT_EQ(inserted.getString("node-name"), "fmt-vda") << device.dump();
		EXPECT_EQ(inserted.getString("file"), disk_) << device.dump();
		EXPECT_EQ(inserted.get("image").getString("format"), "qcow2") << device.dump();
		EXPECT_EQ(inserted.get("image").getInt("virtual-size"), 64 << 20) << device.dump();
	}
	EXPECT_TRUE(found) << block->dump(true);

	auto nodes = client_->execute("query-named-block-nodes", Json::object().set("flat", Json::boolean(true)));
	ASSERT_TRUE(nodes) << nodes.error().toString();
	std::vector<std::string> names;
	for (size_t i = 0; i < nodes->size(); i++)
		names.push_back(nodes->at(i).getString("node-name").value_or(""));
	EXPECT_NE(std::find(names.begin(), names.end(), "file-vda"), names.end());
	EXPECT_NE(std::find(names.begin(), names.end(), "fmt-vda"), names.end());
}

TEST_F(RealQemuTest, ErrorReplyHasClassAndDesc)
{
	auto result = client_->execute("blockdev-del", Json::object().set("node-name", Json::string("no-such-node")));
	ASSERT_FALSE(result);
	EXPECT_EQ(result.error().errorClass, "GenericError");
	EXPECT_NE(result.error().desc.find("no-such-node"), std::string::npos) << result.error().desc;

	auto unknown = client_->execute("no-such-command");
	ASSERT_FALSE(unknown);
	EXPECT_EQ(unknown.error().errorClass, "CommandNotFound");

	// The connection is still usable after errors.
	EXPECT_TRUE(client_->execute("query-status"));
}

TEST_F(RealQemuTest, StopAndContProduceEvents)
{
	ASSERT_TRUE(client_->execute("stop"));
	auto stopped = client_->waitEvent("STOP", {}, 5000ms);
	ASSERT_TRUE(stopped) << stopped.error().toString();
	EXPECT_TRUE(stopped->raw.get("timestamp").isObject());
	auto status = client_->execute("query-status");
	ASSERT_TRUE(status) << status.error().toString();
	EXPECT_EQ(status->getString("status"), "paused");

	ASSERT_TRUE(client_->execute("cont"));
	auto resumed = client_->waitEvent("RESUME", {}, 5000ms);
	ASSERT_TRUE(resumed) << resumed.error().toString();

	// Events go to every monitor: the fixture's control connection saw them too.
	auto controlStop = vm_->control().waitEvent("STOP", {}, 5000ms);
	EXPECT_TRUE(controlStop) << controlStop.error().toString();
}

TEST_F(RealQemuTest, HmpQemuIoWritesAPatternThatReadsBack)
{
	std::string output;
	ASSERT_TRUE(vm_->qemuIo("vda", "write -P 0xab 0 64k", &output)) << output;
	EXPECT_NE(output.find("wrote 65536/65536 bytes at offset 0"), std::string::npos) << output;
	EXPECT_TRUE(vm_->qemuIo("vda", "read -P 0xab 0 64k", &output)) << output;
	EXPECT_NE(output.find("read 65536/65536 bytes"), std::string::npos) << output;
	// The check can fail: a wrong pattern, an unknown device.
	EXPECT_FALSE(vm_->qemuIo("vda", "read -P 0xcd 0 64k", &output)) << output;
	EXPECT_NE(output.find("Pattern verification failed"), std::string::npos) << output;
	EXPECT_FALSE(vm_->qemuIo("vdz", "read -P 0xab 0 64k", &output)) << output;
	EXPECT_NE(output.find("not found"), std::string::npos) << output;

	auto info = vm_->hmp("info block");
	ASSERT_TRUE(info) << info.error().toString();
	EXPECT_NE(info->find("fmt-vda"), std::string::npos) << *info;

	// The data really reached the image.
	vm_.reset();
	std::string check;
	EXPECT_EQ(runCommand({"qemu-io", "-f", "qcow2", "-c", "read -P 0xab 0 64k", disk_}, &check), 0) << check;
	EXPECT_EQ(check.find("fail"), std::string::npos) << check;
}

TEST_F(RealQemuTest, QemuIoWorksDuringABackupJob)
{
	std::string target = tmp_.file("backup.qcow2");
	std::string error;
	ASSERT_TRUE(createImage(target, "qcow2", "64M", &error)) << error;
	ASSERT_TRUE(vm_->qemuIo("vda", "write -P 0x11 0 1M"));
	Json add = Json::object();
	add.set("driver", Json::string("qcow2"))
		.set("node-name", Json::string("backup-target"))
		.set("file", Json::object()
				     .set("driver", Json::string("file"))
				     .set("filename", Json::string(target)));
	auto added = client_->execute("blockdev-add", add);
	ASSERT_TRUE(added) << added.error().toString();
	Json backup = Json::object();
	backup.set("job-id", Json::string("job0"))
		.set("device", Json::string("fmt-vda"))
		.set("target", Json::string("backup-target"))
		.set("sync", Json::string("full"))
		.set("speed", Json::integer(1)) // crawl, so the job is still running below
		.set("auto-dismiss", Json::boolean(false));
	auto started = client_->execute("blockdev-backup", backup);
	ASSERT_TRUE(started) << started.error().toString();

	std::string output;
	EXPECT_TRUE(vm_->qemuIo("vda", "write -P 0x22 0 64k", &output)) << output;
	EXPECT_TRUE(vm_->qemuIo("vda", "read -P 0x22 0 64k", &output)) << output;
	auto jobs = client_->execute("query-block-jobs");
	ASSERT_TRUE(jobs) << jobs.error().toString();
	EXPECT_EQ(jobs->size(), 1u) << jobs->dump();

	ASSERT_TRUE(client_->execute("block-job-cancel", Json::object().set("device", Json::string("job0"))));
	auto concluded = client_->waitEvent(
		"JOB_STATUS_CHANGE", [](const Json &data) { return data.getString("status") == "concluded"; }, 10000ms);
	ASSERT_TRUE(concluded) << concluded.error().toString();
	EXPECT_TRUE(client_->execute("job-dismiss", Json::object().set("id", Json::string("job0"))));
}

TEST_F(RealQemuTest, SecondClientOnABusyMonitorTimesOut)
{
	// QEMU serves one client per monitor; a second one gets no greeting
	// until the first leaves.
	auto second = QmpClient::connect(vm_->qmpSocket(), 300ms);
	ASSERT_FALSE(second);
	EXPECT_EQ(second.error().errorClass, "Timeout");
	client_.reset();
	auto third = QmpClient::connect(vm_->qmpSocket(), 5000ms);
	EXPECT_TRUE(third) << third.error().toString();
}

// The probe the integration tests trust to see leftovers: it must see each
// kind of thing a capture makes, and none once they are gone.
TEST_F(RealQemuTest, TheResidueProbeSeesWhatACaptureMakesAndNoLess)
{
	TempDir scratch("vs-residue");
	qmp::QmpClient &qmp = vm_->control();
	QemuResidue clean = qemuResidue(qmp, scratch.path());
	EXPECT_TRUE(clean.jobs.empty() && clean.exports.empty() && clean.bitmaps.empty() && clean.files.empty())
		<< toString(clean);

	// As a capture does: a bitmap, a scratch node over a file in the work
	// directory, a backup job into it, and an NBD export of it.
	std::string work = scratch.file("virtsnap-work");
	std::filesystem::create_directories(work);
	std::string error;
	ASSERT_TRUE(createImage(work + "/s0.qcow2", "qcow2", "64M", &error)) << error;
	ASSERT_TRUE(qmp.execute("block-dirty-bitmap-add",
				Json::object().set("node", Json::string("fmt-vda")).set("name", Json::string("b1"))));
	Json add = Json::object();
	add.set("driver", Json::string("qcow2"))
		.set("node-name", Json::string("vs-scratch"))
		.set("backing", Json::string("fmt-vda"))
		.set("file", Json::object()
				     .set("driver", Json::string("file"))
				     .set("filename", Json::string(work + "/s0.qcow2")));
	auto added = qmp.execute("blockdev-add", add);
	ASSERT_TRUE(added) << added.error().toString();
	Json backup = Json::object();
	backup.set("job-id", Json::string("vs-job"))
		.set("device", Json::string("fmt-vda"))
		.set("target", Json::string("vs-scratch"))
		.set("sync", Json::string("none"));
	auto started = qmp.execute("blockdev-backup", backup);
	ASSERT_TRUE(started) << started.error().toString();
	Json addr = Json::object();
	addr.set("type", Json::string("unix"))
		.set("data", Json::object().set("path", Json::string(work + "/nbd.sock")));
	ASSERT_TRUE(qmp.execute("nbd-server-start", Json::object().set("addr", addr)));
	Json exp = Json::object();
	exp.set("type", Json::string("nbd"))
		.set("id", Json::string("vs-export"))
		.set("node-name", Json::string("vs-scratch"))
		.set("writable", Json::boolean(false));
	auto exported = qmp.execute("block-export-add", exp);
	ASSERT_TRUE(exported) << exported.error().toString();

	QemuResidue busy = qemuResidue(qmp, scratch.path());
	EXPECT_NE(std::find(busy.nodes.begin(), busy.nodes.end(), "vs-scratch"), busy.nodes.end()) << toString(busy);
	EXPECT_EQ(busy.jobs, std::vector<std::string>{"vs-job"});
	EXPECT_EQ(busy.exports, std::vector<std::string>{"vs-export"});
	EXPECT_NE(std::find(busy.bitmaps.begin(), busy.bitmaps.end(), "b1"), busy.bitmaps.end()) << toString(busy);
	EXPECT_EQ(busy.files, (std::vector<std::string>{"virtsnap-work/nbd.sock", "virtsnap-work/s0.qcow2"}));
	EXPECT_NE(busy, clean);
	// Seen behind the job's filter too; the job's own bitmaps have no name
	// and are counted by default.
	EXPECT_EQ(dirtyBitmaps(qmp, AnonymousBitmaps::Ignored), std::set<std::string>{"b1"});
	EXPECT_EQ(dirtyBitmaps(qmp), (std::set<std::string>{"", "b1"}));

	// Taken down in a capture's order, QEMU is clean again.
	ASSERT_TRUE(qmp.execute("block-export-del", Json::object().set("id", Json::string("vs-export"))));
	ASSERT_TRUE(qmp.waitEvent("BLOCK_EXPORT_DELETED", {}, 10000ms));
	ASSERT_TRUE(qmp.execute("nbd-server-stop"));
	ASSERT_TRUE(qmp.execute("block-job-cancel",
				Json::object().set("device", Json::string("vs-job")).set("force", Json::boolean(true))));
	auto deadline = std::chrono::steady_clock::now() + 10s;
	while (!qemuResidue(qmp).jobs.empty() && std::chrono::steady_clock::now() < deadline)
		std::this_thread::sleep_for(10ms);
	ASSERT_TRUE(qmp.execute("blockdev-del", Json::object().set("node-name", Json::string("vs-scratch"))));
	ASSERT_TRUE(qmp.execute("block-dirty-bitmap-remove",
				Json::object().set("node", Json::string("fmt-vda")).set("name", Json::string("b1"))));
	std::filesystem::remove_all(work);
	EXPECT_EQ(qemuResidue(qmp, scratch.path()), clean);
	EXPECT_EQ(dirtyBitmaps(qmp), std::set<std::string>{});
}

TEST(QemuInstanceTest, QuitFromTheCodeUnderTestIsNoticed)
{
	REQUIRE_QEMU();
	std::string error;
	QemuOptions options;
	options.freeMonitors = 2;
	auto vm = QemuInstance::start(options, &error);
	ASSERT_TRUE(vm) << error;
	EXPECT_NE(vm->qmpSocket(0), vm->qmpSocket(1));
	auto client = QmpClient::connect(vm->qmpSocket(1), 10000ms);
	ASSERT_TRUE(client) << client.error().toString();
	EXPECT_TRUE(vm->isRunning());
	// quit's reply may race with the connection closing.
	(void)(*client)->execute("quit", Json(), 5000ms);
	EXPECT_TRUE(vm->waitExit(10000ms));
	EXPECT_FALSE(vm->isRunning());
}

TEST(QemuInstanceTest, GuestAgentChannelWithoutAnAgentTimesOut)
{
	REQUIRE_QEMU();
	std::string error;
	QemuOptions options;
	options.guestAgent = true;
	auto vm = QemuInstance::start(options, &error);
	ASSERT_TRUE(vm) << error;
	ASSERT_FALSE(vm->guestAgentSocket().empty());
	// No guest OS, so nobody answers on the channel: a hung agent.
	auto agent = qmp::GuestAgentClient::connect(vm->guestAgentSocket(), 500ms);
	ASSERT_FALSE(agent);
	EXPECT_EQ(agent.error().errorClass, "Timeout");
	EXPECT_NE(agent.error().desc.find(vm->guestAgentSocket()), std::string::npos) << agent.error().desc;
	EXPECT_TRUE(vm->isRunning());
}

TEST(QemuInstanceTest, BadArgumentsReportQemusError)
{
	REQUIRE_QEMU();
	std::string error;
	QemuOptions options;
	options.extraArgs = {"-no-such-option"};
	auto vm = QemuInstance::start(options, &error);
	ASSERT_FALSE(vm);
	EXPECT_NE(error.find("no-such-option"), std::string::npos) << error;
}

} // namespace
} // namespace virtsnap::test
