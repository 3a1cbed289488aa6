// What the files defining the Catalog's members share. Internal to the
// catalog.
#pragma once

#include <string>
#include <vector>

namespace virtsnap::catalog {

// A list bound as one parameter: a JSON array of strings.
std::string toJsonArray(const std::vector<std::string> &items);

} // namespace virtsnap::catalog
