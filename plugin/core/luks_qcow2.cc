#include "luks_qcow2.h"

#include "process.h"
#include "secret_memfd.h"

namespace virtsnap {

namespace {

constexpr const char *kLuksCreateSecretId = "vscreate0";
constexpr int kLuksCreateAttempts = 5;

} // namespace

Result<void> createLuksQcow2(const LuksQcow2 &spec, const char *errorCode)
{
	std::string options = std::string("encrypt.format=luks,encrypt.key-secret=") + kLuksCreateSecretId +
			      ",encrypt.iter-time=" + std::to_string(spec.iterTime.count());
	if (!spec.extraOptions.empty())
		options += "," + spec.extraOptions;
	std::vector<int> keep = spec.keepFds;
	keep.push_back(spec.secretFd);
	// QEMU 7.2 times its key derivation by the thread's CPU time, which on
	// hosts with tick-based accounting reads 0 now and then: it then fails
	// with "Unable to get accurate CPU usage" (a third of the runs on this
	// project's VMs), and a second run does not.
	Result<std::string> made;
	for (int attempt = 0; attempt < kLuksCreateAttempts; attempt++) {
		made = runProgram({"qemu-img", "create", "-q", "-f", "qcow2", "--object",
				   secretObject(kLuksCreateSecretId, spec.secretFd), "-o", options, spec.image,
				   std::to_string(spec.size)},
				  errorCode, keep);
		if (made || made.error().message.find("accurate CPU usage") == std::string::npos)
			break;
	}
	if (!made)
		return std::unexpected(made.error());
	return {};
}

} // namespace virtsnap
