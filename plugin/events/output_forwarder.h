// A handler's output, copied line by line after a prefix naming the handler,
// so its messages land in the daemon's journal attributed. Bounded, so a
// chatty handler cannot flood the journal. The bytes are whatever the
// handler printed: nothing about them is trusted.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace virtsnap::events {

class OutputForwarder
{
public:
	static constexpr size_t kMaxForwarded = 64 * 1024;
	static constexpr size_t kMaxLine = 4096;

	// `write` gets each whole line, newline included; an empty prefix
	// drops everything.
	OutputForwarder(std::string prefix, std::function<void(const std::string &line)> write)
		: prefix_(std::move(prefix)), write_(std::move(write))
	{
	}

	void feed(const char *data, size_t n);
	// Forwards a last line that had no newline.
	void finish();

private:
	void flushLine();

	std::string prefix_;
	std::function<void(const std::string &line)> write_;
	std::string partial_;
	size_t forwarded_ = 0;
	bool truncated_ = false;
};

} // namespace virtsnap::events
