// A backend that wraps another and makes one of its calls go wrong, in the
// style of LevelDB's fault_injection_test: the process "dies" at a chosen
// step, losing exactly what the backend contract (backend.h) does not call
// durable yet, or a write fails with an I/O error or a full disk and the
// process goes on. Every call is logged, so a test can print the sequence a
// store operation makes and tell at which step it broke.
//
// Steps are numbered calls of the kinds a plan counts, from 0:
//  - kDurableCalls (the crash points): put, create, a writer's commit,
//    remove and sweepPartial, the calls after which the backend holds
//    something else. openWriter and append are not among them: nothing
//    they write is visible before the commit, so a crash there leaves what
//    a crash before the commit leaves;
//  - kWritingCalls (where a disk fills or fails): those, plus openWriter
//    and every append.
// A crash kills the whole process: every backend made with the same
// FaultInjector fails every later call, reads included, and every writer not
// committed is dropped at once (a directory's temporary file goes with it,
// where a real crash would leave it for gc: nothing a reader sees differs).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "store/backend.h"

namespace virtsnap::store::test {

enum class Call : uint8_t {
	Put,
	Create,
	OpenWriter,
	Append,
	Commit,
	Remove,
	SweepPartial,
	Get,
	GetRange,
	Stat,
	List,
	Now,
};

constexpr uint32_t callBit(Call c)
{
	return 1u << unsigned(c);
}

inline constexpr uint32_t kDurableCalls = callBit(Call::Put) | callBit(Call::Create) | callBit(Call::Commit) |
					  callBit(Call::Remove) | callBit(Call::SweepPartial);
inline constexpr uint32_t kWritingCalls = kDurableCalls | callBit(Call::OpenWriter) | callBit(Call::Append);

const char *callName(Call c);

enum class Fault {
	None,
	CrashBefore, // the process dies as the call starts: the call is not performed
	CrashAfter,  // the process dies as the call returns: performed (durable), never answered
	IoError,     // the call fails with IOError, not performed; the process goes on
	NoSpace,     // the same with InsufficientStorage: a full disk
};

const char *faultName(Fault f);

struct FaultPlan {
	Fault fault = Fault::None;
	uint64_t step = 0;               // which counted call, from 0
	uint32_t counted = kDurableCalls; // which calls are steps
};

struct CallRecord {
	uint64_t seq = 0;              // every call, in the order they began
	Call call = Call::Get;
	std::string object;            // the name; a listing's prefix; a writer's object
	std::optional<uint64_t> step;  // its number among the counted calls
	Fault fault = Fault::None;     // what was done to it
	bool refused = false;          // failed because the process had crashed before it

	std::string describe() const;
};

// What one process shares between the backends it uses: the plan, the
// count, the log, whether it has crashed, and the writers it has open.
class FaultInjector
{
public:
	// Starts counting anew under `plan`; the log is kept.
	void arm(const FaultPlan &plan);
	// Nothing more goes wrong; a crashed process stays crashed.
	void disarm();

	bool crashed() const;
	// Counted calls since arm().
	uint64_t steps() const;
	// The call the plan hit, once it has.
	std::optional<CallRecord> faulted() const;
	std::vector<CallRecord> calls() const;
	// One line per call of the kinds in `kinds`, for a failure message.
	std::string describeCalls(uint32_t kinds = kWritingCalls) const;
	void clearLog();

private:
	friend class FaultBackend;
	friend class FaultWriter;

	struct WriterSlot {
		std::mutex mutex;
		std::unique_ptr<ObjectWriter> inner; // reset when the process dies
	};

	struct Ticket {
		enum { Perform, PerformThenDie, Refuse } action = Perform;
		Error error;
	};

	// Decides the fate of a call as it begins; `self` is the writer a
	// writer's call is on, spared when its own commit is what dies after.
	Ticket enter(Call call, const std::string &object, const WriterSlot *self = nullptr);
	std::shared_ptr<WriterSlot> track(std::unique_ptr<ObjectWriter> inner);
	// Drops every writer not committed (but `spare`). Not under mutex_.
	void dropWriters(const WriterSlot *spare);

	mutable std::mutex mutex_;
	FaultPlan plan_;
	uint64_t steps_ = 0;
	bool crashed_ = false;
	std::string crashedAt_; // the call it died at, for the errors of later calls
	std::optional<CallRecord> faulted_;
	std::vector<CallRecord> log_;
	std::vector<std::weak_ptr<WriterSlot>> writers_;
};

class FaultBackend : public Backend
{
public:
	FaultBackend(std::unique_ptr<Backend> inner, std::shared_ptr<FaultInjector> injector)
		: inner_(std::move(inner)), injector_(std::move(injector))
	{
	}

	Backend &inner() const { return *inner_; }
	FaultInjector &injector() const { return *injector_; }

	// The inner backend's: messages name the store as the code under test
	// would see it.
	std::string describe() const override { return inner_->describe(); }
	bool local() const override { return inner_->local(); }

	Result<void> put(const std::string &name, std::span<const uint8_t> data) override;
	Result<void> create(const std::string &name, std::span<const uint8_t> data) override;
	Result<std::unique_ptr<ObjectWriter>> openWriter(const std::string &name) override;
	Result<Bytes> get(const std::string &name) override;
	Result<void> getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out) override;
	Result<ObjectInfo> stat(const std::string &name) override;
	Result<void> list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit) override;
	Result<void> remove(const std::string &name) override;
	Result<std::chrono::system_clock::time_point> now() override;
	Result<Swept> sweepPartial(std::chrono::seconds grace, bool dryRun) override;

private:
	template<typename F>
	auto run(Call call, const std::string &object, F &&perform) -> decltype(perform());

	std::unique_ptr<Backend> inner_;
	std::shared_ptr<FaultInjector> injector_;
};

} // namespace virtsnap::store::test
