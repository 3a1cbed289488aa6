// The check every capture path of an encrypted disk passes: its scratch
// holds the data the guest overwrote during the transfer, and must hold it
// encrypted.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "hypervisor/capture.h"
#include "json/json.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {

// `scratchFile` is a LUKS image without `marker` in the clear, while the
// export `e` (the point in time, read into `exported`) still reads it: the
// marker, overwritten in the disk since, came from the scratch.
inline void expectEncryptedScratch(const std::string &scratchFile, const hypervisor::DiskExport &e,
				   const std::string &marker, const std::string &exported)
{
	std::string out;
	EXPECT_EQ(readFile(scratchFile).find(marker), std::string::npos) << scratchFile << " holds plaintext";
	ASSERT_EQ(runCommand({"qemu-img", "info", "-U", "--output=json", scratchFile}, &out), 0) << out;
	EXPECT_EQ(Json::parse(out).value_or(Json()).getBool("encrypted"), true) << out;
	ASSERT_EQ(runCommand({"qemu-img", "convert", "-f", "raw", "-O", "raw",
			      "nbd+unix:///" + e.exportName + "?socket=" + e.nbdSocket, exported},
			     &out),
		  0)
		<< out;
	EXPECT_NE(readFile(exported).find(marker), std::string::npos) << "the scratch had the old data";
}

} // namespace virtsnap::test
