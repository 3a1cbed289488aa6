#include "states.h"

#include <array>
#include <utility>

namespace virtsnap {

namespace {

constexpr std::array kSnapshotStates = {
	std::pair{SnapshotState::Pending, "pending"},
	std::pair{SnapshotState::Completed, "completed"},
	std::pair{SnapshotState::Error, "error"},
};

constexpr std::array kJobStates = {
	std::pair{JobState::Running, "running"},
	std::pair{JobState::Done, "done"},
	std::pair{JobState::Failed, "failed"},
	std::pair{JobState::Interrupted, "interrupted"},
};

template<typename Table, typename State>
std::string nameIn(const Table &table, State state)
{
	for (const auto &[s, n] : table)
		if (s == state)
			return n;
	return "unknown";
}

template<typename Table>
auto stateIn(const Table &table, std::string_view name) -> std::optional<decltype(table[0].first)>
{
	for (const auto &[s, n] : table)
		if (n == name)
			return s;
	return std::nullopt;
}

} // namespace

std::string name(SnapshotState state)
{
	return nameIn(kSnapshotStates, state);
}

std::string name(JobState state)
{
	return nameIn(kJobStates, state);
}

std::optional<SnapshotState> snapshotStateNamed(std::string_view name)
{
	return stateIn(kSnapshotStates, name);
}

std::optional<JobState> jobStateNamed(std::string_view name)
{
	return stateIn(kJobStates, name);
}

} // namespace virtsnap
