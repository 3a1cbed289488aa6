// Files virtsnap creates where its caller says (create-volume's --target,
// get-snapshot-block's --output-file): virtsnapd runs as root, its callers
// need not. While an ActingAs is alive, the thread's file-system identity
// is the caller's (setfsuid/setfsgid, which Linux keeps per thread), so
// the kernel allows exactly what the caller could do: a group member
// cannot have the daemon write /etc/passwd, and what it creates is the
// caller's. Keep the scope to the calls that name the caller's paths: the
// store's own files are root's.
#pragma once

#include <string>

#include "error.h"

namespace virtsnap {

class ActingAs
{
public:
	// `uid`: the caller's uid as text (the daemon's Call::ownerId); empty
	// for ourselves. Nothing changes when we are not root or the caller is.
	static Result<ActingAs> caller(const std::string &uid);
	ActingAs(ActingAs &&other) noexcept : active_(other.active_) { other.active_ = false; }
	ActingAs &operator=(ActingAs &&) = delete;
	~ActingAs();

private:
	explicit ActingAs(bool active) : active_(active) {}
	bool active_;
};

} // namespace virtsnap
