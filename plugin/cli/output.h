// Renders results as the AWS CLI does: JSON by default, or a table.
#pragma once

#include <string>
#include <vector>

#include "json/json.h"

namespace virtsnap::cli {

enum class OutputFormat { Json, Table };

// Prints `doc` to stdout. For tables, `listKey` names the array member whose
// objects become rows (and `columns` their columns); scalars print as
// "Key  Value" lines.
void print(OutputFormat format, const virtsnap::Json &doc, const std::string &listKey = "",
	   const std::vector<std::string> &columns = {});

} // namespace virtsnap::cli
