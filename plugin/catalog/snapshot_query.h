// DescribeSnapshots as SQL: EC2 filters to a WHERE clause with bound
// parameters, EC2 wildcards to GLOB patterns, and the opaque next token.
// Separate from the Catalog so the translation is testable on its own.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "catalog.h"

namespace virtsnap::catalog {

// An EC2 filter value: `*` matches any run of characters, `?` any one,
// and a backslash makes the next `*`, `?` or `\\` literal (as the AWS
// documentation describes). Case-sensitive, as EC2 is.
struct Pattern {
	bool wildcard = false; // can match more than one string
	std::string literal;   // what it matches when !wildcard
	std::string glob;      // for GLOB: literal `*`, `?`, `[` as classes
};
Pattern parsePattern(const std::string &value);

// A WHERE clause (without "WHERE"; "1" when nothing restricts) over table
// alias `s`, and the texts to bind to its `?`s in order.
struct Clause {
	std::string sql;
	std::vector<std::string> params;
};

// InvalidParameterValue for an unknown filter name, or a filter without
// values, naming the filter.
Result<Clause> filterClause(const std::vector<Filter> &filters);

// The keyset position after which the next page starts.
struct PageKey {
	std::string startTime;
	std::string snapshotId;
};

std::string encodeNextToken(const PageKey &key);
// nullopt for anything encodeNextToken did not make.
std::optional<PageKey> decodeNextToken(const std::string &token);

} // namespace virtsnap::catalog
