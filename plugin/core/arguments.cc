#include "arguments.h"

#include <json-c/json.h>

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
	json_object *obj = json_object_new_object();
	for (const auto &[name, list] : values_) {
		json_object *arr = json_object_new_array();
		for (const std::string &v : list)
			json_object_array_add(arr, json_object_new_string_len(v.data(), int(v.size())));
		json_object_object_add(obj, name.c_str(), arr);
	}
	std::string out = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	json_object_put(obj);
	return out;
}

Result<Arguments> Arguments::fromJson(const std::string &command, const std::string &json,
				      const std::vector<OptionSpec> &specs)
{
	json_object *obj = json_tokener_parse(json.c_str());
	if (!obj || !json_object_is_type(obj, json_type_object)) {
		if (obj)
			json_object_put(obj);
		return fail(errc::kInvalidParameterValue, "options are not a JSON object");
	}
	Arguments a;
	a.command_ = command;
	Result<Arguments> result = a;
	json_object_object_foreach(obj, key, val)
	{
		const OptionSpec *spec = nullptr;
		for (const OptionSpec &s : specs)
			if (s.name == key)
				spec = &s;
		if (!spec || !json_object_is_type(val, json_type_array)) {
			result = fail(errc::kInvalidParameterValue, std::string("unknown option --") + key);
			break;
		}
		std::vector<std::string> list;
		for (size_t i = 0; i < json_object_array_length(val); i++)
			list.push_back(json_object_get_string(json_object_array_get_idx(val, i)));
		if (list.size() > 1 && !spec->repeatable) {
			result = fail(errc::kInvalidParameterValue, std::string("option --") + key + " is given twice");
			break;
		}
		result->values_[key] = std::move(list);
	}
	json_object_put(obj);
	return result;
}

} // namespace virtsnap
