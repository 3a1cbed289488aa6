#include "policy_timer.h"

#include <cstdio>

#include "commands.h"

namespace virtsnap::daemon {

namespace {

Result<Json> ask(Service &service, const std::string &command, const Json &options)
{
	const CommandSpec *spec = findCommand(command);
	VS_ASSIGN(Arguments args, Arguments::fromJson(command, options.dump(), spec->options));
	// The daemon asks for itself (as root): the run acts for the policy's
	// owner, whom the policy names.
	VS_ASSIGN(Reply reply, service.run(args, ""));
	if (reply.failure)
		return std::unexpected(*reply.failure);
	return reply.doc;
}

Json one(const std::string &value)
{
	return Json::array().append(Json::string(value));
}

// The names of the policy's schedules whose NextRun is at or before `now`.
Result<std::vector<std::string>> dueOf(Service &service, const std::string &policyId, UtcTime now)
{
	VS_ASSIGN(Json doc, ask(service, "get-lifecycle-policy", Json::object().set("policy-id", one(policyId))));
	Json schedules = doc.get("Policy").get("ScheduleRuns");
	std::vector<std::string> due;
	for (size_t i = 0; i < schedules.size(); i++) {
		auto next = parseUtcTime(schedules.at(i).getString("NextRun").value_or(""));
		if (next && *next <= now)
			due.push_back(schedules.at(i).getString("Name").value_or(""));
	}
	return due;
}

} // namespace

int runDueSchedules(Service &service, UtcTime now)
{
	auto policies = ask(service, "get-lifecycle-policies", Json::object().set("state", one("ENABLED")));
	if (!policies) {
		std::fprintf(stderr, "virtsnapd: policy timer: %s\n", policies.error().toString().c_str());
		return 0;
	}
	int ran = 0;
	Json list = policies->get("Policies");
	for (size_t i = 0; i < list.size(); i++) {
		std::string id = list.at(i).getString("PolicyId").value_or("");
		auto due = dueOf(service, id, now);
		if (!due)
			std::fprintf(stderr, "virtsnapd: policy %s: %s\n", id.c_str(), due.error().toString().c_str());
		for (const std::string &schedule : due.value_or(std::vector<std::string>{})) {
			Json options = Json::object().set("policy-id", one(id)).set("schedule", one(schedule));
			auto run = ask(service, "run-lifecycle-policy", options);
			std::fprintf(stderr, "virtsnapd: policy %s schedule %s: %s\n", id.c_str(), schedule.c_str(),
				     run ? "succeeded" : run.error().toString().c_str());
			ran++;
		}
	}
	return ran;
}

PolicyTimer::PolicyTimer(Service &service, std::chrono::seconds interval)
	: service_(service), interval_(interval), thread_([this] { loop(); })
{
}

PolicyTimer::~PolicyTimer()
{
	{
		std::lock_guard lock(mutex_);
		stopping_ = true;
	}
	wake_.notify_all();
	thread_.join();
}

void PolicyTimer::loop()
{
	for (uint64_t pass = 1;; pass++) {
		int ran = runDueSchedules(service_, std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
		// Tests wait for passes by this line.
		std::fprintf(stderr, "virtsnapd: policy timer: pass %llu ran %d schedule(s)\n",
			     static_cast<unsigned long long>(pass), ran);
		std::unique_lock lock(mutex_);
		if (wake_.wait_for(lock, interval_, [this] { return stopping_; }))
			return;
	}
}

} // namespace virtsnap::daemon
