// Product codes (EC2's ProductCodes): marks a volume carries from its
// instance into its snapshots, and from those into copies and restores.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace virtsnap {

struct ProductCode {
	std::string id;                   // letters and digits, as EC2's codes
	std::string type = "marketplace"; // "marketplace" | "devpay"

	bool operator==(const ProductCode &) const = default;
};

// "ID" or "ID:TYPE", the form the command line, the catalog and the
// instance records use. Refuses anything else as InvalidParameterValue.
[[nodiscard]] Result<ProductCode> parseProductCode(std::string_view spec);
std::string toString(const ProductCode &code);

// Adds the codes of `add` that `into` lacks (by id), keeping order.
void addProductCodes(std::vector<ProductCode> &into, const std::vector<ProductCode> &add);

} // namespace virtsnap
