#include "events/output_forwarder.h"

namespace virtsnap::events {

void OutputForwarder::feed(const char *data, size_t n)
{
	if (prefix_.empty())
		return;
	for (size_t i = 0; i < n; i++) {
		if (data[i] == '\n' || partial_.size() >= kMaxLine)
			flushLine();
		if (data[i] != '\n')
			partial_.push_back(data[i]);
	}
}

void OutputForwarder::finish()
{
	if (!partial_.empty())
		flushLine();
}

void OutputForwarder::flushLine()
{
	if (forwarded_ >= kMaxForwarded) {
		if (!truncated_)
			write_(prefix_ + "(further output discarded)\n");
		truncated_ = true;
	} else {
		forwarded_ += partial_.size();
		write_(prefix_ + partial_ + "\n");
	}
	partial_.clear();
}

} // namespace virtsnap::events
