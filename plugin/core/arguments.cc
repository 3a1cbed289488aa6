#include "arguments.h"

#include <algorithm>

#include "json/json.h"

namespace virtsnap {

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

std::string Arguments::toJson() const
{
	Json obj = Json::object();
	for (const auto &[name, list] : values_) {
		Json arr = Json::array();
		for (const std::string &v : list)
			arr.append(Json::string(v));
		obj.set(name, arr);
	}
	return obj.dump();
}

Result<Arguments> Arguments::fromJson(const std::string &command, const std::string &json,
				      const std::vector<OptionSpec> &specs)
{
	auto obj = Json::parse(json);
	if (!obj || !obj->isObject())
		return fail(errc::kInvalidParameterValue, "options are not a JSON object");
	Arguments a;
	a.command_ = command;
	for (const std::string &key : obj->keys()) {
		auto spec = std::find_if(specs.begin(), specs.end(), [&](const OptionSpec &s) { return s.name == key; });
		Json values = obj->get(key);
		if (spec == specs.end() || !values.isArray())
			return fail(errc::kInvalidParameterValue, "unknown option --" + key);
		if (values.size() > 1 && !spec->repeatable)
			return fail(errc::kInvalidParameterValue, "option --" + key + " is given twice");
		// get() and require() read the last value: an option is there with
		// one at least (a flag is [""]), as it is from the command line.
		if (values.size() == 0)
			return fail(errc::kInvalidParameterValue, "option --" + key + " has no value");
		std::vector<std::string> list;
		for (size_t i = 0; i < values.size(); i++) {
			if (!values.at(i).isString())
				return fail(errc::kInvalidParameterValue, "option --" + key + ": values must be strings");
			list.push_back(values.at(i).asString());
		}
		a.values_[key] = std::move(list);
	}
	return a;
}

} // namespace virtsnap
