#include "fault_backend.h"

namespace virtsnap::store::test {

const char *callName(Call c)
{
	switch (c) {
	case Call::Put: return "put";
	case Call::Create: return "create";
	case Call::OpenWriter: return "openWriter";
	case Call::Append: return "append";
	case Call::Commit: return "commit";
	case Call::Remove: return "remove";
	case Call::SweepPartial: return "sweepPartial";
	case Call::Get: return "get";
	case Call::GetRange: return "getRange";
	case Call::Stat: return "stat";
	case Call::List: return "list";
	case Call::Now: return "now";
	}
	return "?";
}

const char *faultName(Fault f)
{
	switch (f) {
	case Fault::None: return "none";
	case Fault::CrashBefore: return "crash before";
	case Fault::CrashAfter: return "crash after";
	case Fault::IoError: return "I/O error";
	case Fault::NoSpace: return "disk full";
	}
	return "?";
}

std::string CallRecord::describe() const
{
	// Appended piece by piece: "literal" + std::string&& trips GCC 12's
	// bogus -Wrestrict (core/compiler.h) in release builds.
	std::string out = "#";
	out += std::to_string(seq);
	if (step) {
		out += " step ";
		out += std::to_string(*step);
	}
	out += " ";
	out += callName(call);
	if (!object.empty()) {
		out += " ";
		out += object;
	}
	if (fault != Fault::None) {
		out += "  <- ";
		out += faultName(fault);
	}
	if (refused)
		out += "  (refused: crashed)";
	return out;
}

void FaultInjector::arm(const FaultPlan &plan)
{
	std::lock_guard lock(mutex_);
	plan_ = plan;
	steps_ = 0;
	faulted_.reset();
}

void FaultInjector::disarm()
{
	std::lock_guard lock(mutex_);
	plan_.fault = Fault::None;
}

bool FaultInjector::crashed() const
{
	std::lock_guard lock(mutex_);
	return crashed_;
}

uint64_t FaultInjector::steps() const
{
	std::lock_guard lock(mutex_);
	return steps_;
}

std::optional<CallRecord> FaultInjector::faulted() const
{
	std::lock_guard lock(mutex_);
	return faulted_;
}

std::vector<CallRecord> FaultInjector::calls() const
{
	std::lock_guard lock(mutex_);
	return log_;
}

std::string FaultInjector::describeCalls(uint32_t kinds) const
{
	std::lock_guard lock(mutex_);
	std::string out;
	for (const CallRecord &r : log_)
		if (kinds & callBit(r.call))
			out += r.describe() + "\n";
	return out;
}

void FaultInjector::clearLog()
{
	std::lock_guard lock(mutex_);
	log_.clear();
}

FaultInjector::Ticket FaultInjector::enter(Call call, const std::string &object, const WriterSlot *self)
{
	Ticket ticket;
	bool dies = false;
	{
		std::lock_guard lock(mutex_);
		CallRecord rec{log_.size(), call, object, std::nullopt, Fault::None, false};
		if (crashed_) {
			rec.refused = true;
			ticket.action = Ticket::Refuse;
			ticket.error = {errc::kStoreUnavailable,
					"fault injection: the process crashed at " + crashedAt_ + "; no " + callName(call) +
						" " + object};
			log_.push_back(std::move(rec));
			return ticket;
		}
		if (plan_.counted & callBit(call))
			rec.step = steps_++;
		if (rec.step && plan_.fault != Fault::None && *rec.step == plan_.step && !faulted_) {
			rec.fault = plan_.fault;
			faulted_ = rec;
			std::string what = std::string("fault injection: ") + callName(call) + " " + object;
			switch (plan_.fault) {
			case Fault::CrashBefore:
			case Fault::CrashAfter:
				crashed_ = dies = true;
				crashedAt_ = rec.describe();
				ticket.action =
					plan_.fault == Fault::CrashAfter ? Ticket::PerformThenDie : Ticket::Refuse;
				ticket.error = {errc::kStoreUnavailable, "fault injection: the process crashed at " +
										 rec.describe()};
				break;
			case Fault::IoError:
				ticket.action = Ticket::Refuse;
				ticket.error = {errc::kIo, what + ": Input/output error"};
				break;
			case Fault::NoSpace:
				ticket.action = Ticket::Refuse;
				ticket.error = {errc::kNoSpace, what + ": No space left on device"};
				break;
			case Fault::None:
				break;
			}
		}
		log_.push_back(std::move(rec));
	}
	// What was not committed dies with the process; the call that dies
	// after being performed keeps its writer until it has.
	if (dies)
		dropWriters(ticket.action == Ticket::PerformThenDie ? self : nullptr);
	return ticket;
}

std::shared_ptr<FaultInjector::WriterSlot> FaultInjector::track(std::unique_ptr<ObjectWriter> inner)
{
	auto slot = std::make_shared<WriterSlot>();
	slot->inner = std::move(inner);
	std::lock_guard lock(mutex_);
	std::erase_if(writers_, [](const std::weak_ptr<WriterSlot> &w) { return w.expired(); });
	writers_.push_back(slot);
	return slot;
}

void FaultInjector::dropWriters(const WriterSlot *spare)
{
	std::vector<std::shared_ptr<WriterSlot>> live;
	{
		std::lock_guard lock(mutex_);
		for (const auto &w : writers_)
			if (auto slot = w.lock(); slot && slot.get() != spare)
				live.push_back(std::move(slot));
	}
	// A writer busy in another thread is dropped once its call returns.
	for (const auto &slot : live) {
		std::lock_guard lock(slot->mutex);
		slot->inner.reset();
	}
}

// Appends and the commit go through the injector like any call; the inner
// writer is gone once the process has died.
class FaultWriter : public ObjectWriter
{
public:
	FaultWriter(std::shared_ptr<FaultInjector> injector, std::string name,
		    std::shared_ptr<FaultInjector::WriterSlot> slot)
		: injector_(std::move(injector)), name_(std::move(name)), slot_(std::move(slot))
	{
	}

	Result<void> append(std::span<const uint8_t> data) override
	{
		VS_TRY(perform(Call::Append, [&](ObjectWriter &w) { return w.append(data); }));
		size_ += data.size();
		return {};
	}

	Result<void> commit() override
	{
		return perform(Call::Commit, [](ObjectWriter &w) { return w.commit(); });
	}

	uint64_t size() const override { return size_; }

private:
	template<typename F>
	Result<void> perform(Call call, F &&op)
	{
		// Before the slot's lock: a crash here drops every writer, this
		// one's too.
		auto ticket = injector_->enter(call, name_, slot_.get());
		if (ticket.action == FaultInjector::Ticket::Refuse)
			return std::unexpected(ticket.error);
		std::lock_guard lock(slot_->mutex);
		if (!slot_->inner)
			return fail(errc::kStoreUnavailable,
				    "fault injection: the writer of " + name_ + " died with its process");
		auto r = op(*slot_->inner);
		if (ticket.action == FaultInjector::Ticket::PerformThenDie) {
			slot_->inner.reset();
			return std::unexpected(ticket.error);
		}
		return r;
	}

	std::shared_ptr<FaultInjector> injector_;
	std::string name_;
	std::shared_ptr<FaultInjector::WriterSlot> slot_;
	uint64_t size_ = 0;
};

template<typename F>
auto FaultBackend::run(Call call, const std::string &object, F &&perform) -> decltype(perform())
{
	auto ticket = injector_->enter(call, object);
	if (ticket.action == FaultInjector::Ticket::Refuse)
		return std::unexpected(ticket.error);
	auto r = perform();
	if (ticket.action == FaultInjector::Ticket::PerformThenDie)
		return std::unexpected(ticket.error);
	return r;
}

Result<void> FaultBackend::put(const std::string &name, std::span<const uint8_t> data)
{
	return run(Call::Put, name, [&] { return inner_->put(name, data); });
}

Result<void> FaultBackend::create(const std::string &name, std::span<const uint8_t> data)
{
	return run(Call::Create, name, [&] { return inner_->create(name, data); });
}

Result<std::unique_ptr<ObjectWriter>> FaultBackend::openWriter(const std::string &name)
{
	VS_ASSIGN(auto inner, run(Call::OpenWriter, name, [&] { return inner_->openWriter(name); }));
	return std::unique_ptr<ObjectWriter>(new FaultWriter(injector_, name, injector_->track(std::move(inner))));
}

Result<Bytes> FaultBackend::get(const std::string &name)
{
	return run(Call::Get, name, [&] { return inner_->get(name); });
}

Result<void> FaultBackend::getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out)
{
	return run(Call::GetRange, name, [&] { return inner_->getRange(name, offset, out); });
}

Result<ObjectInfo> FaultBackend::stat(const std::string &name)
{
	return run(Call::Stat, name, [&] { return inner_->stat(name); });
}

Result<void> FaultBackend::list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit)
{
	return run(Call::List, prefix, [&] { return inner_->list(prefix, visit); });
}

Result<void> FaultBackend::remove(const std::string &name)
{
	return run(Call::Remove, name, [&] { return inner_->remove(name); });
}

Result<std::chrono::system_clock::time_point> FaultBackend::now()
{
	return run(Call::Now, "", [&] { return inner_->now(); });
}

Result<Backend::Swept> FaultBackend::sweepPartial(std::chrono::seconds grace, bool dryRun)
{
	return run(Call::SweepPartial, "", [&] { return inner_->sweepPartial(grace, dryRun); });
}

} // namespace virtsnap::store::test
