#include "product_code.h"

#include <algorithm>
#include <cctype>

namespace virtsnap {

namespace {

constexpr size_t kMaxIdLength = 64;

bool validId(std::string_view id)
{
	return !id.empty() && id.size() <= kMaxIdLength &&
	       std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
}

// The spec as an error shows it: on one line, not too long.
std::string shown(std::string_view spec)
{
	std::string out(spec.substr(0, 80));
	for (char &c : out)
		if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
			c = '?';
	return out;
}

} // namespace

Result<ProductCode> parseProductCode(std::string_view spec)
{
	const size_t colon = spec.find(':');
	ProductCode code{std::string(spec.substr(0, colon))};
	if (colon != std::string_view::npos)
		code.type = std::string(spec.substr(colon + 1));
	if (!validId(code.id))
		return fail(errc::kInvalidParameterValue,
			    "product code '" + shown(spec) + "': its id must be 1 to " +
				    std::to_string(kMaxIdLength) + " letters and digits");
	if (code.type != "marketplace" && code.type != "devpay")
		return fail(errc::kInvalidParameterValue,
			    "product code '" + shown(spec) + "': its type must be marketplace or devpay");
	return code;
}

std::string toString(const ProductCode &code)
{
	return code.id + ":" + code.type;
}

void addProductCodes(std::vector<ProductCode> &into, const std::vector<ProductCode> &add)
{
	for (const ProductCode &code : add)
		if (std::none_of(into.begin(), into.end(), [&](const ProductCode &c) { return c.id == code.id; }))
			into.push_back(code);
}

} // namespace virtsnap
