// A small owning handle over json-c objects, so no caller pairs get/put by hand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct json_object;

namespace virtsnap {

class Json
{
public:
	Json() = default;                         // null
	explicit Json(json_object *owned);        // takes one reference
	static Json borrow(json_object *obj);     // adds a reference
	Json(const Json &other);
	Json(Json &&other) noexcept;
	Json &operator=(Json other) noexcept;
	~Json();

	static Json object();
	static Json array();
	static Json string(std::string_view s);
	static Json integer(int64_t v);
	static Json boolean(bool v);
	// Parses exactly one JSON value; nullopt on any syntax error.
	static std::optional<Json> parse(std::string_view text);

	bool isNull() const { return obj_ == nullptr; }
	bool isObject() const;
	bool isArray() const;
	bool isString() const;
	bool isInt() const;

	// Object access. get() returns a null Json when the key is absent.
	Json get(std::string_view key) const;
	bool has(std::string_view key) const;
	std::optional<std::string> getString(std::string_view key) const;
	std::optional<int64_t> getInt(std::string_view key) const;
	std::optional<bool> getBool(std::string_view key) const;
	Json &set(std::string_view key, Json value);
	std::vector<std::string> keys() const;

	// Array access.
	size_t size() const;
	Json at(size_t i) const;
	Json &append(Json value);

	// Scalars (empty / 0 / false when of another type).
	std::string asString() const;
	int64_t asInt() const;
	bool asBool() const;

	std::string dump(bool pretty = false) const;
	json_object *raw() const { return obj_; }

private:
	json_object *obj_ = nullptr;
};

// RFC 3629 UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
// JSON text is UTF-8; json-c does not check it.
bool isValidUtf8(std::string_view text);

} // namespace virtsnap
