// The states of snapshots and jobs. Inside the code they are enums; their
// names appear only at the edges: the catalog's columns, JSON output and
// filters, and events.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace virtsnap {

enum class SnapshotState { Pending, Completed, Error };

enum class JobState {
	Running,     // its process moves the data now (or died doing it)
	Done,        // every snapshot completed
	Failed,      // some snapshot ended in error
	Interrupted, // its process died; a later one cleaned up after it
};

// "pending", "completed", "error"
std::string name(SnapshotState state);
// "running", "done", "failed", "interrupted"
std::string name(JobState state);
std::optional<SnapshotState> snapshotStateNamed(std::string_view name);
std::optional<JobState> jobStateNamed(std::string_view name);

} // namespace virtsnap
