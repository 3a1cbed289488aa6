// Command-line parsing in the AWS CLI's style: `virtsnap [global options]
// COMMAND [options]`, global options accepted anywhere, repeatable options
// kept in order.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "error.h"

namespace virtsnap {

struct OptionSpec {
	std::string name;   // without the dashes
	bool takesValue = true;
	bool repeatable = false;
};

class Arguments
{
public:
	// Fails with InvalidParameterValue naming an unknown option, a missing
	// value or a repeated single option.
	static Result<Arguments> parse(const std::vector<std::string> &args, const std::vector<OptionSpec> &specs);

	const std::string &command() const { return command_; }
	bool has(const std::string &name) const { return values_.count(name) != 0; }
	std::string get(const std::string &name, const std::string &fallback = "") const;
	const std::vector<std::string> &all(const std::string &name) const;
	// MissingParameter naming the option when it is absent.
	Result<std::string> require(const std::string &name) const;

	// Options as JSON {"name": ["value", ...]} and back: how a command
	// travels to the daemon, parsed once, by the same specs.
	std::string toJson() const;
	static Result<Arguments> fromJson(const std::string &command, const std::string &json,
					  const std::vector<OptionSpec> &specs);
	void set(const std::string &name, std::vector<std::string> values) { values_[name] = std::move(values); }
	void erase(const std::string &name) { values_.erase(name); }
	const std::map<std::string, std::vector<std::string>> &values() const { return values_; }

private:
	std::string command_;
	std::map<std::string, std::vector<std::string>> values_;
};

} // namespace virtsnap
