// Splits a byte stream into JSON values no matter how the bytes were
// chunked by read(), with json-c's incremental tokener: the framing of QMP,
// of the guest agent and of virtsnapd's socket.
#pragma once

#include <optional>
#include <string>

#include <expected>

#include "json/json.h"

struct json_tokener;

namespace virtsnap {

class JsonStream
{
public:
	JsonStream();
	~JsonStream();
	JsonStream(const JsonStream &) = delete;
	JsonStream &operator=(const JsonStream &) = delete;

	// Consumes bytes from the front of `buffer`: returns the next complete
	// value and leaves whatever follows it in `buffer`, or nullopt once
	// all of `buffer` was taken as the start of a value still incomplete.
	// On invalid JSON returns what json-c says is wrong, resets itself and
	// leaves `buffer` untouched, so the caller can look for a place to
	// resume.
	[[nodiscard]] std::expected<std::optional<Json>, std::string> next(std::string &buffer);

	// Forgets a partially parsed value.
	void reset();

	// True between values (nothing partial held).
	bool idle() const { return idle_; }

private:
	json_tokener *tok_;
	bool idle_ = true;
};

} // namespace virtsnap
