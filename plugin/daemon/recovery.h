// After a crash: jobs a killed process (daemon or CLI) left "running" end
// in error, and what their captures left in QEMU is removed, from the
// cleanup record each job wrote before its data moved.
#pragma once

#include "context.h"

namespace virtsnap::daemon {

void recoverInterruptedJobs(Context &ctx);

} // namespace virtsnap::daemon
