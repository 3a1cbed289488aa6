#include "json/json.h"

#include <json-c/json.h>

#include <utility>

#include "json/json_stream.h"

namespace virtsnap {

Json::Json(json_object *owned) : obj_(owned) {}

Json Json::borrow(json_object *obj)
{
	return Json(json_object_get(obj));
}

Json::Json(const Json &other) : obj_(json_object_get(other.obj_)) {}

Json::Json(Json &&other) noexcept : obj_(std::exchange(other.obj_, nullptr)) {}

Json &Json::operator=(Json other) noexcept
{
	std::swap(obj_, other.obj_);
	return *this;
}

Json::~Json()
{
	json_object_put(obj_);
}

Json Json::object()
{
	return Json(json_object_new_object());
}

Json Json::array()
{
	return Json(json_object_new_array());
}

Json Json::string(std::string_view s)
{
	return Json(json_object_new_string_len(s.data(), static_cast<int>(s.size())));
}

Json Json::integer(int64_t v)
{
	return Json(json_object_new_int64(v));
}

Json Json::boolean(bool v)
{
	return Json(json_object_new_boolean(v ? 1 : 0));
}

std::optional<Json> Json::parse(std::string_view text)
{
	JsonStream stream;
	std::string buffer(text);
	auto value = stream.next(buffer);
	if (!value || !*value) {
		// A bare number has no terminator of its own: only the end of the
		// text completes it, which the stream learns from a final NUL.
		if (!value || stream.idle())
			return std::nullopt;
		buffer.assign(1, '\0');
		value = stream.next(buffer);
		if (!value || !*value)
			return std::nullopt;
		return std::move(**value);
	}
	for (char c : buffer) {
		if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
			return std::nullopt;
	}
	return std::move(**value);
}

bool Json::isObject() const
{
	return json_object_is_type(obj_, json_type_object);
}

bool Json::isArray() const
{
	return json_object_is_type(obj_, json_type_array);
}

bool Json::isString() const
{
	return json_object_is_type(obj_, json_type_string);
}

bool Json::isInt() const
{
	return json_object_is_type(obj_, json_type_int);
}

Json Json::get(std::string_view key) const
{
	json_object *value = nullptr;
	if (!isObject() || !json_object_object_get_ex(obj_, std::string(key).c_str(), &value))
		return Json();
	return borrow(value);
}

bool Json::has(std::string_view key) const
{
	return isObject() && json_object_object_get_ex(obj_, std::string(key).c_str(), nullptr);
}

std::optional<std::string> Json::getString(std::string_view key) const
{
	Json value = get(key);
	if (!value.isString())
		return std::nullopt;
	return value.asString();
}

std::optional<int64_t> Json::getInt(std::string_view key) const
{
	Json value = get(key);
	if (!json_object_is_type(value.obj_, json_type_int))
		return std::nullopt;
	return value.asInt();
}

std::optional<bool> Json::getBool(std::string_view key) const
{
	Json value = get(key);
	if (!json_object_is_type(value.obj_, json_type_boolean))
		return std::nullopt;
	return value.asBool();
}

Json &Json::set(std::string_view key, Json value)
{
	// A null Json becomes an object on first set, so arguments can be built
	// up from a default-constructed value.
	if (isNull())
		obj_ = json_object_new_object();
	if (isObject() && value.obj_ != obj_) {
		if (json_object_object_add(obj_, std::string(key).c_str(), value.obj_) == 0)
			value.obj_ = nullptr;
	}
	return *this;
}

std::vector<std::string> Json::keys() const
{
	std::vector<std::string> result;
	if (!isObject())
		return result;
	json_object_object_foreach(obj_, key, value)
	{
		(void)value;
		result.emplace_back(key);
	}
	return result;
}

size_t Json::size() const
{
	if (isArray())
		return json_object_array_length(obj_);
	if (isObject())
		return static_cast<size_t>(json_object_object_length(obj_));
	return 0;
}

Json Json::at(size_t i) const
{
	if (!isArray() || i >= json_object_array_length(obj_))
		return Json();
	return borrow(json_object_array_get_idx(obj_, i));
}

Json &Json::append(Json value)
{
	if (isNull())
		obj_ = json_object_new_array();
	if (isArray() && value.obj_ != obj_) {
		if (json_object_array_add(obj_, value.obj_) == 0)
			value.obj_ = nullptr;
	}
	return *this;
}

std::string Json::asString() const
{
	if (!isString())
		return {};
	return std::string(json_object_get_string(obj_),
			   static_cast<size_t>(json_object_get_string_len(obj_)));
}

int64_t Json::asInt() const
{
	if (!json_object_is_type(obj_, json_type_int))
		return 0;
	return json_object_get_int64(obj_);
}

bool Json::asBool() const
{
	if (!json_object_is_type(obj_, json_type_boolean))
		return false;
	return json_object_get_boolean(obj_) != 0;
}

std::string Json::dump(bool pretty) const
{
	if (obj_ == nullptr)
		return "null";
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE;
	flags |= pretty ? JSON_C_TO_STRING_PRETTY : JSON_C_TO_STRING_PLAIN;
	size_t length = 0;
	const char *text = json_object_to_json_string_length(obj_, flags, &length);
	return std::string(text, length);
}

bool isValidUtf8(std::string_view text)
{
	const auto *p = reinterpret_cast<const unsigned char *>(text.data());
	const unsigned char *end = p + text.size();
	while (p < end) {
		unsigned char c = *p;
		if (c < 0x80) {
			p++;
			continue;
		}
		int more;
		uint32_t cp, min;
		if ((c & 0xE0) == 0xC0)
			more = 1, cp = c & 0x1F, min = 0x80;
		else if ((c & 0xF0) == 0xE0)
			more = 2, cp = c & 0x0F, min = 0x800;
		else if ((c & 0xF8) == 0xF0)
			more = 3, cp = c & 0x07, min = 0x10000;
		else
			return false;
		if (end - p <= more)
			return false;
		for (int i = 1; i <= more; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		p += more + 1;
	}
	return true;
}

} // namespace virtsnap
