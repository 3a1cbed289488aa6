#include "arguments.h"

namespace virtsnap::cli {

Result<Arguments> Arguments::parse(const std::vector<std::string> &args, const std::vector<OptionSpec> &specs)
{
	Arguments a;
	for (size_t i = 0; i < args.size(); i++) {
		const std::string &arg = args[i];
		if (arg.rfind("--", 0) != 0) {
			if (!a.command_.empty())
				return fail(errc::kInvalidParameterValue, "unexpected argument '" + arg + "'");
			a.command_ = arg;
			continue;
		}
		std::string name = arg.substr(2), value;
		bool inlineValue = false;
		if (auto eq = name.find('='); eq != std::string::npos) {
			value = name.substr(eq + 1);
			name = name.substr(0, eq);
			inlineValue = true;
		}
		const OptionSpec *spec = nullptr;
		for (const OptionSpec &s : specs)
			if (s.name == name)
				spec = &s;
		if (!spec)
			return fail(errc::kInvalidParameterValue, "unknown option --" + name);
		if (spec->takesValue && !inlineValue) {
			if (i + 1 >= args.size())
				return fail(errc::kMissingParameter, "option --" + name + " needs a value");
			value = args[++i];
		} else if (!spec->takesValue && inlineValue) {
			return fail(errc::kInvalidParameterValue, "option --" + name + " takes no value");
		}
		auto &slot = a.values_[name];
		if (!slot.empty() && !spec->repeatable)
			return fail(errc::kInvalidParameterValue, "option --" + name + " is given twice");
		slot.push_back(value);
	}
	return a;
}

std::string Arguments::get(const std::string &name, const std::string &fallback) const
{
	auto it = values_.find(name);
	return it == values_.end() ? fallback : it->second.back();
}

const std::vector<std::string> &Arguments::all(const std::string &name) const
{
	static const std::vector<std::string> none;
	auto it = values_.find(name);
	return it == values_.end() ? none : it->second;
}

Result<std::string> Arguments::require(const std::string &name) const
{
	auto it = values_.find(name);
	if (it == values_.end())
		return fail(errc::kMissingParameter, "--" + name + " is required");
	return it->second.back();
}

} // namespace virtsnap::cli
