// Files a command writes where its caller says (get-snapshot-block's
// --output-file): virtsnapd runs as root, its callers need not. While one
// of these is alive, the thread's file-system identity is the caller's
// (setfsuid/setfsgid, which Linux keeps per thread), so the kernel allows
// exactly what the caller could do: a group member cannot have the daemon
// write /etc/passwd, and what it creates is the caller's.
#pragma once

#include <string>

#include "core/error.h"

namespace virtsnap::daemon {

class ActingAsCaller
{
public:
	// `ownerId`: the caller's uid as text (Call::ownerId). Nothing changes
	// when the daemon is not root or the caller is.
	static Result<ActingAsCaller> begin(const std::string &ownerId);
	ActingAsCaller(ActingAsCaller &&other) noexcept : active_(other.active_) { other.active_ = false; }
	ActingAsCaller &operator=(ActingAsCaller &&) = delete;
	~ActingAsCaller();

private:
	explicit ActingAsCaller(bool active) : active_(active) {}
	bool active_;
};

} // namespace virtsnap::daemon
