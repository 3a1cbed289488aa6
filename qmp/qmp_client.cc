#include "qmp/qmp_client.h"

#include <unistd.h>

#include "json/json_stream.h"
#include "qmp/messages.h"
#include "qmp/unix_socket.h"

namespace qmp {

using virtsnap::Json;

namespace {

using Clock = std::chrono::steady_clock;



} // namespace

QmpClient::QmpClient(int fd, std::string socketPath)
	: fd_(fd), socketPath_(std::move(socketPath)), stream_(std::make_unique<virtsnap::JsonStream>())
{
}

QmpClient::~QmpClient()
{
	if (fd_ >= 0)
		::close(fd_);
}

Result<std::unique_ptr<QmpClient>> QmpClient::connect(const std::string &socketPath, Duration timeout)
{
	Deadline deadline = Clock::now() + timeout;
	auto fd = detail::connectUnix(socketPath);
	if (!fd)
		return fail(kConnectionFailed, "QMP: " + fd.error().desc);
	std::unique_ptr<QmpClient> client(new QmpClient(*fd, socketPath));

	auto greeting = client->readMessage(deadline);
	if (!greeting) {
		if (greeting.error().errorClass == kTimeout)
			return fail(kTimeout, "no QMP greeting from " + socketPath + " within " + ms(timeout) +
						       " (is another client connected?)");
		return std::unexpected(greeting.error());
	}
	if (!greeting->get("QMP").isObject())
		return fail(kProtocolError,
			    "expected a QMP greeting from " + socketPath + ", got " + excerpt(*greeting));
	client->version_ = greeting->get("QMP").get("version").get("qemu");

	auto caps = client->executeUntil("qmp_capabilities", Json(), deadline, timeout);
	if (!caps)
		return std::unexpected(caps.error());
	return client;
}

std::unexpected<Error> QmpClient::die(Error error)
{
	if (!dead_)
		dead_ = error;
	if (fd_ >= 0) {
		// Closing at once hands the monitor back to QEMU for other clients.
		::close(fd_);
		fd_ = -1;
	}
	return std::unexpected(std::move(error));
}

Result<Json> QmpClient::readMessage(Deadline deadline)
{
	for (;;) {
		if (dead_)
			return std::unexpected(*dead_);
		auto value = stream_->next(buffer_);
		if (!value)
			return die({kProtocolError, "QMP socket " + socketPath_ + " sent " + value.error()});
		if (*value) {
			if (!(*value)->isObject())
				return die({kProtocolError, "QMP socket " + socketPath_ +
								     " sent a non-object message: " + excerpt(**value)});
			return std::move(**value);
		}
		auto received = detail::receiveSome(fd_, buffer_, deadline, "QMP socket " + socketPath_);
		if (!received) {
			if (received.error().errorClass == kTimeout)
				return std::unexpected(received.error());
			return die(received.error());
		}
	}
}

bool QmpClient::queueEvent(const Json &message)
{
	auto name = message.getString("event");
	if (!name)
		return false;
	events_.push_back(Event{*name, message.get("data"), message});
	return true;
}

Result<Json> QmpClient::execute(const std::string &command, Json arguments, std::optional<Duration> timeout)
{
	Duration t = timeout.value_or(commandTimeout_);
	return executeUntil(command, arguments, Clock::now() + t, t);
}

Result<Json> QmpClient::executeUntil(const std::string &command, const Json &arguments,
				     Deadline deadline, Duration timeout)
{
	if (dead_)
		return std::unexpected(*dead_);
	auto timedOut = [&] {
		return fail(kTimeout, "QEMU did not answer " + command + " within " + ms(timeout) +
					       " on " + socketPath_);
	};

	int64_t id = static_cast<int64_t>(nextId_++);
	Json request = Json::object();
	request.set("execute", Json::string(command));
	if (!arguments.isNull())
		request.set("arguments", arguments);
	request.set("id", Json::integer(id));
	auto sent = detail::sendAll(fd_, request.dump() + "\r\n", deadline, "QMP socket " + socketPath_);
	if (!sent) {
		// A partly written command would corrupt the stream for the next one.
		if (sent.error().errorClass == kTimeout)
			return die({kTimeout, "could not send " + command + " to " + socketPath_ +
						       " within " + ms(timeout)});
		return die(sent.error());
	}

	for (;;) {
		auto message = readMessage(deadline);
		if (!message) {
			if (message.error().errorClass == kTimeout)
				return timedOut();
			return std::unexpected(message.error());
		}
		if (!queueEvent(*message)) {
			bool isReply = message->has("return") || message->has("error");
			// QEMU answers without an id only when it could not parse the
			// request at all, which can only concern the command in flight.
			bool ours = isReply && (message->has("id") ? message->getInt("id") == id
								   : message->has("error"));
			if (ours) {
				Json error = message->get("error");
				if (!error.isNull())
					return fail(error.getString("class").value_or("GenericError"),
						    error.getString("desc").value_or(excerpt(error)));
				return message->get("return");
			}
			// Anything else is a late reply of a command that timed out.
		}
		if (Clock::now() >= deadline)
			return timedOut();
	}
}

Result<Event> QmpClient::nextEvent(Duration timeout)
{
	return waitEvent({}, {}, timeout);
}

Result<Event> QmpClient::waitEvent(const std::string &name,
				   const std::function<bool(const Json &data)> &match, Duration timeout)
{
	auto matches = [&](const Event &event) {
		return (name.empty() || event.name == name) && (!match || match(event.data));
	};
	for (auto it = events_.begin(); it != events_.end(); ++it) {
		if (matches(*it)) {
			Event event = std::move(*it);
			events_.erase(it);
			return event;
		}
	}

	Deadline deadline = Clock::now() + timeout;
	for (;;) {
		auto message = readMessage(deadline);
		if (!message) {
			if (message.error().errorClass == kTimeout)
				return fail(kTimeout, "no " + (name.empty() ? std::string("QMP") : name) +
							       " event arrived within " + ms(timeout) + " on " +
							       socketPath_);
			return std::unexpected(message.error());
		}
		// Replies seen here belong to commands that already timed out.
		if (queueEvent(*message) && matches(events_.back())) {
			Event event = std::move(events_.back());
			events_.pop_back();
			return event;
		}
		if (Clock::now() >= deadline)
			return fail(kTimeout, "no " + (name.empty() ? std::string("QMP") : name) +
						       " event arrived within " + ms(timeout) + " on " + socketPath_);
	}
}

} // namespace qmp
