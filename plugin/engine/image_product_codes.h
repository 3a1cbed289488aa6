// Product codes that follow an image file (core/product_code_mark.h): a
// restore marks the file it writes with its snapshot's codes, and a
// capture or describe-volumes gives a volume those of the file it finds
// attached, whatever instance and disk attach it now.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/product_code.h"
#include "hypervisor/capture.h"
#include "resources.h"

namespace virtsnap::engine {

// The codes of a disk's image, as its hypervisor names the file. Names that
// are not absolute paths (QEMU's "json:{...}", "nbd:...", an RBD image)
// carry none.
[[nodiscard]] Result<std::vector<ProductCode>> imageProductCodes(const std::string &filename);

// Gives `volume` the codes of `disk`'s image it lacks (codes are only ever
// added, as on EBS). A mark that cannot be read or does not parse is left
// out, and `warn` says so. Returns whether the record gained any.
bool addImageProductCodes(VolumeRecord &volume, const hypervisor::DiskInfo &disk,
			  const std::function<void(const std::string &)> &warn);

// Marks a restored image, the open file `fd` that becomes `target`, with
// its snapshot's codes. A file that cannot keep them does not fail the
// restore: `warn` says so in one line.
void markRestoredImage(int fd, const std::filesystem::path &target, const std::vector<ProductCode> &codes,
		       const std::function<void(const std::string &)> &warn);

} // namespace virtsnap::engine
