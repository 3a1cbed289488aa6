// The fixtures of the integration tests: the virtsnap CLI on a store of the
// test's own (CliTest), and that against a QEMU of the test's own
// (QemuCliTest), with the probes of what captures leave behind.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "tests/support/qemu_instance.h"
#include "tests/support/qemu_residue.h"
#include "tests/support/test_env.h"
#include "tests/support/virtsnapd.h"

namespace virtsnap::test {

// The same bytes into `device` of the running `vm` (qemu-io, as a guest
// writes) and into the raw `reference` file, made independently of virtsnap.
// `pattern` is a byte, or random bytes when < 0 (staged in `scratchFile`).
void mirrorWrite(QemuInstance &vm, const std::string &device, const std::string &reference,
		 const std::string &scratchFile, uint64_t offset, uint64_t length, int pattern);

// The arguments of guest-exec that run `script` with the guest's /bin/sh.
virtsnap::Json guestExecArguments(const std::string &script);

// Whether `image` (in `format`) holds what the raw `expected` does, by
// qemu-img compare; the failure says what differs.
::testing::AssertionResult sameImage(const std::string &image, const std::string &format,
				     const std::string &expected);

// The state `stateOf` reports once it is no longer "pending", polled every
// 100 ms for at most `timeout`; "pending" if it never changed.
std::string waitWhilePending(const std::function<std::string()> &stateOf,
			     std::chrono::seconds timeout = std::chrono::seconds(120));

class CliTest : public ::testing::Test
{
protected:
	explicit CliTest(const std::string &prefix = "vs-test") : tmp_(prefix) {}

	// The $TMPDIR of every run (and of a daemon), where captures make their
	// work directories: this test's own, so that leftovers show.
	std::string workRoot();

	// virtsnap --store storeDir_ --key-file KEY ARGS, KEY being `keyFile`
	// or else keyFile_, with $TMPDIR workRoot() and VIRTSNAP_SOCKET `socket`
	// or else cliSocket_.
	CliResult cli(std::vector<std::string> args, const std::string &socket = "", const std::string &keyFile = "");
	// cli(args) while process `pid` is stopped (SIGSTOP: a hung QEMU),
	// which resumes after; *took is how long the command ran.
	CliResult cliWhileStopped(pid_t pid, std::vector<std::string> args, std::chrono::milliseconds *took);

	// A virtsnapd's options on this test's store and key, its $TMPDIR
	// workRoot(), its socket `socket`, and its files in this test's
	// directory (events/events.jsonl, events.d, virtsnapd.log).
	VirtsnapdOptions daemonOptions(const std::string &socket, std::vector<std::string> args = {});

	TempDir tmp_;
	std::string storeDir_ = tmp_.file("store");
	std::string keyFile_ = tmp_.file("keys/store.key");
	// By default a socket where no daemon listens: commands run in this
	// process.
	std::string cliSocket_ = tmp_.file("no-daemon.sock");
};

// A CliTest against a QEMU the test starts into vm_.
class QemuCliTest : public CliTest
{
protected:
	using CliTest::CliTest;

	// What captures may have left in vm_ and in workRoot().
	QemuResidue residue() { return qemuResidue(vm_->control(), workRoot()); }
	// The names of vm_'s dirty bitmaps.
	std::set<std::string> bitmaps(AnonymousBitmaps anonymous = AnonymousBitmaps::Counted)
	{
		return dirtyBitmaps(vm_->control(), anonymous);
	}

	std::unique_ptr<QemuInstance> vm_;
};

} // namespace virtsnap::test
