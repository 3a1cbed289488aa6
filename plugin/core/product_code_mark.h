// The product codes an image file carries itself (EBS: a volume created
// from a snapshot with product codes has them, wherever it is attached
// next). A volume id derives from the instance and disk that attach a
// file, so a record of the volume is lost when the file moves to another
// instance or disk; a user extended attribute on the file is not, through
// renames and `cp -a` (but not through a copy that drops xattrs).
#pragma once

#include <filesystem>
#include <vector>

#include "error.h"
#include "product_code.h"

namespace virtsnap {

// Its value: the codes as "ID:TYPE" (product_code.h), separated by spaces.
inline constexpr const char *kProductCodeMarkAttribute = "user.virtsnap.product-codes";

// Marks the open file with exactly `codes`. Through the descriptor a writer
// holds, never a name a symlink could have been swapped into. A filesystem
// without user xattrs: UnsupportedOperation.
[[nodiscard]] Result<void> writeProductCodeMark(int fd, const std::vector<ProductCode> &codes);

// The codes `path` is marked with. None for a file without a mark, one that
// is gone or not a regular file (a block device), or one on a filesystem
// without user xattrs. A mark that does not parse: InvalidParameterValue
// naming the file.
[[nodiscard]] Result<std::vector<ProductCode>> readProductCodeMark(const std::filesystem::path &path);

} // namespace virtsnap
