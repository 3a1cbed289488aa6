// Cooperative cancellation on SIGINT/SIGTERM. The handler only sets a flag:
// long operations check it between steps and unwind through their normal
// error paths, so RAII teardown (thaw, bitmaps, exports, scratch files)
// runs as for any other failure.
#pragma once

namespace virtsnap {

// Installs the handlers (without SA_RESTART, so blocking calls return EINTR
// and their callers get to check the flag).
void installCancelHandlers();
bool cancelRequested();
// The signal that asked for cancellation, 0 if none.
int cancelSignal();

} // namespace virtsnap
