// The stream reader that frames QMP, the agent and the daemon's socket: the
// bytes arrive in pieces of any size, and every value it returns must dump
// to text that parses back to the same value.
#include "fuzz_util.h"
#include "json/json.h"
#include "json/json_stream.h"

using namespace virtsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	// The first byte picks how read() chunks the stream.
	size_t piece = 1 + data[0] % 64;
	std::string_view rest = fuzz::textOf(data + 1, size - 1);

	JsonStream stream;
	std::string buffer;
	for (size_t at = 0; at < rest.size(); at += piece) {
		buffer.append(rest.substr(at, piece));
		for (;;) {
			auto value = stream.next(buffer);
			if (!value) {
				// What the clients do: give up on the junk and go on.
				fuzz::check(stream.idle(), "a reset stream is idle");
				buffer.clear();
				break;
			}
			if (!*value)
				break;
			std::string text = (*value)->dump();
			auto again = Json::parse(text);
			fuzz::check(again.has_value(), "a value's dump parses");
			fuzz::check(again->dump() == text, "a value's dump is stable");
		}
	}

	auto whole = Json::parse(rest);
	if (whole)
		(void)Json::parse(whole->dump(true));
	(void)isValidUtf8(rest);
	return 0;
}
