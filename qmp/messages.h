// Small helpers both protocol clients use to word their errors.
#pragma once

#include <chrono>
#include <string>

#include "json/json.h"

namespace qmp {

inline std::string ms(std::chrono::milliseconds d)
{
	return std::to_string(d.count()) + " ms";
}

// Keeps error descs to one readable line when they quote a message.
inline std::string excerpt(const virtsnap::Json &message)
{
	std::string text = message.dump();
	if (text.size() > 200)
		text = text.substr(0, 200) + "...";
	return text;
}

} // namespace qmp
