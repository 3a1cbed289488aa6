#include "json/json_stream.h"

#include <json-c/json.h>

#include <climits>

namespace virtsnap {

namespace {

// QEMU nests one level per backing image in query-block; json-c's default
// limit of 32 would reject a long snapshot chain.
constexpr int kMaxDepth = 1024;

bool isSpace(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

} // namespace

JsonStream::JsonStream() : tok_(json_tokener_new_ex(kMaxDepth))
{
	// Strict mode rejects most of json-c's extensions (NaN, comments...);
	// trailing characters are the next message, not an error. No UTF-8
	// validation: json-c 0.16 rejects a multi-byte character split between
	// two reads, and it fails a complete value followed by an invalid
	// byte such as the agent's 0xFF.
	json_tokener_set_flags(tok_, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
}

JsonStream::~JsonStream()
{
	json_tokener_free(tok_);
}

void JsonStream::reset()
{
	json_tokener_reset(tok_);
	idle_ = true;
}

std::expected<std::optional<Json>, std::string> JsonStream::next(std::string &buffer)
{
	if (idle_) {
		size_t start = 0;
		while (start < buffer.size() && isSpace(buffer[start]))
			start++;
		buffer.erase(0, start);
	}
	if (buffer.empty())
		return std::optional<Json>();

	size_t offset = 0;
	while (offset < buffer.size()) {
		size_t chunk = std::min<size_t>(buffer.size() - offset, INT_MAX - 1);
		json_object *obj = json_tokener_parse_ex(tok_, buffer.data() + offset,
							 static_cast<int>(chunk));
		enum json_tokener_error err = json_tokener_get_error(tok_);
		if (err == json_tokener_continue) {
			idle_ = false;
			offset += chunk;
			continue;
		}
		if (err != json_tokener_success) {
			std::string desc = json_tokener_error_desc(err);
			reset();
			return std::unexpected("invalid JSON: " + desc);
		}
		size_t end = offset + json_tokener_get_parse_end(tok_);
		json_tokener_reset(tok_);
		idle_ = true;
		buffer.erase(0, end);
		return std::optional<Json>(Json(obj));
	}
	buffer.clear();
	return std::optional<Json>();
}

} // namespace virtsnap
