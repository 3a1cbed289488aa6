#include "qmp/guest_agent_client.h"

#include <unistd.h>

#include <random>

#include "json/json_stream.h"
#include "qmp/messages.h"
#include "qmp/unix_socket.h"

namespace qmp {

using virtsnap::Json;

namespace {

using Clock = std::chrono::steady_clock;

// The agent resets its parser on this byte, and puts it before the reply to
// guest-sync-delimited so the reply can be found in a stream of junk.
constexpr char kDelimiter = '\xff';



int64_t randomSyncId()
{
	std::random_device device;
	uint64_t value = (static_cast<uint64_t>(device()) << 32) | device();
	// Positive and within what every JSON reader keeps exact.
	return static_cast<int64_t>(value % ((uint64_t(1) << 53) - 1)) + 1;
}

} // namespace

GuestAgentClient::GuestAgentClient(int fd, std::string socketPath)
	: fd_(fd), socketPath_(std::move(socketPath)), stream_(std::make_unique<virtsnap::JsonStream>())
{
}

GuestAgentClient::~GuestAgentClient()
{
	if (fd_ >= 0)
		::close(fd_);
}

Result<std::unique_ptr<GuestAgentClient>> GuestAgentClient::connect(const std::string &socketPath,
								     Duration timeout)
{
	Deadline deadline = Clock::now() + timeout;
	auto fd = detail::connectUnix(socketPath);
	if (!fd)
		return fail(kConnectionFailed, "guest agent: " + fd.error().desc);
	std::unique_ptr<GuestAgentClient> client(new GuestAgentClient(*fd, socketPath));
	auto synced = client->syncUntil(deadline, timeout, "");
	if (!synced)
		return std::unexpected(synced.error());
	return client;
}

Result<void> GuestAgentClient::sync(Duration timeout)
{
	return syncUntil(Clock::now() + timeout, timeout, "");
}

void GuestAgentClient::skipSeparators()
{
	if (!stream_->idle())
		return;
	size_t start = 0;
	while (start < buffer_.size() &&
	       (buffer_[start] == kDelimiter || buffer_[start] == ' ' || buffer_[start] == '\t' ||
		buffer_[start] == '\r' || buffer_[start] == '\n'))
		start++;
	buffer_.erase(0, start);
}

Result<std::optional<Json>> GuestAgentClient::nextReply()
{
	for (;;) {
		skipSeparators();
		// A delimiter never belongs to a reply: parse only up to it, so
		// a reply it cuts short is dropped instead of swallowing it.
		size_t delimiter = buffer_.find(kDelimiter);
		std::string rest;
		if (delimiter != std::string::npos) {
			rest = buffer_.substr(delimiter);
			buffer_.resize(delimiter);
		}
		auto reply = stream_->next(buffer_);
		buffer_ += rest;
		if (!reply)
			return fail(kProtocolError, reply.error());
		if (*reply || delimiter == std::string::npos)
			return std::move(*reply);
		// The delimiter cut a reply short: what came before it is junk.
		stream_->reset();
	}
}

Result<void> GuestAgentClient::syncUntil(Deadline deadline, Duration timeout, const std::string &what)
{
	needSync_ = true;
	const std::string peer = "guest agent socket " + socketPath_;
	auto timedOut = [&] {
		return fail(kTimeout, "guest agent did not answer guest-sync-delimited" +
					       (what.empty() ? std::string() : " (before " + what + ")") +
					       " within " + ms(timeout) + " on " + socketPath_);
	};

	int64_t id = randomSyncId();
	Json request = Json::object();
	request.set("execute", Json::string("guest-sync-delimited"));
	request.set("arguments", Json::object().set("id", Json::integer(id)));
	auto sent = detail::sendAll(fd_, std::string(1, kDelimiter) + request.dump() + "\n", deadline, peer);
	if (!sent) {
		if (sent.error().errorClass == kTimeout)
			return timedOut();
		return sent;
	}

	// Whatever precedes a delimiter is a stale reply, or the rest of one.
	stream_->reset();
	bool delimited = false;
	for (;;) {
		if (!delimited) {
			size_t pos = buffer_.find(kDelimiter);
			if (pos != std::string::npos) {
				buffer_.erase(0, pos + 1);
				stream_->reset();
				delimited = true;
			} else {
				buffer_.clear();
			}
		}
		if (delimited) {
			auto reply = nextReply();
			if (!reply) {
				// Junk after a delimiter: resume at the next one.
				delimited = false;
				continue;
			}
			if (*reply) {
				auto value = (*reply)->getInt("return");
				if (value && *value == id) {
					needSync_ = false;
					return {};
				}
				// The answer to an earlier sync that timed out.
				if (Clock::now() >= deadline)
					return timedOut();
				continue;
			}
		}
		auto received = detail::receiveSome(fd_, buffer_, deadline, peer);
		if (!received) {
			if (received.error().errorClass == kTimeout)
				return timedOut();
			return received;
		}
	}
}

Result<Json> GuestAgentClient::execute(const std::string &command, Json arguments, Duration timeout)
{
	Deadline deadline = Clock::now() + timeout;
	if (needSync_) {
		auto synced = syncUntil(deadline, timeout, command);
		if (!synced)
			return std::unexpected(synced.error());
	}

	const std::string peer = "guest agent socket " + socketPath_;
	auto timedOut = [&] {
		needSync_ = true;
		return fail(kTimeout, "guest agent did not answer " + command + " within " + ms(timeout) +
					       " on " + socketPath_);
	};
	Json request = Json::object();
	request.set("execute", Json::string(command));
	if (!arguments.isNull())
		request.set("arguments", arguments);
	auto sent = detail::sendAll(fd_, request.dump() + "\n", deadline, peer);
	if (!sent) {
		needSync_ = true;
		if (sent.error().errorClass == kTimeout)
			return timedOut();
		return std::unexpected(sent.error());
	}

	for (;;) {
		auto reply = nextReply();
		if (!reply) {
			needSync_ = true;
			buffer_.clear();
			return fail(kProtocolError, peer + " answered " + command + " with " + reply.error().desc);
		}
		if (*reply) {
			Json message = std::move(**reply);
			Json error = message.get("error");
			if (error.isObject())
				return fail(error.getString("class").value_or("GenericError"),
					    error.getString("desc").value_or(excerpt(error)));
			if (message.has("return"))
				return message.get("return");
			needSync_ = true;
			return fail(kProtocolError,
				    peer + " answered " + command + " with " + excerpt(message));
		}
		auto received = detail::receiveSome(fd_, buffer_, deadline, peer);
		if (!received) {
			if (received.error().errorClass == kTimeout)
				return timedOut();
			needSync_ = true;
			return std::unexpected(received.error());
		}
	}
}

Result<void> GuestAgentClient::post(const std::string &command, Json arguments, Duration timeout)
{
	// Its reply, if the agent ever sends one, is for nobody.
	needSync_ = true;
	Json request = Json::object();
	request.set("execute", Json::string(command));
	if (!arguments.isNull())
		request.set("arguments", arguments);
	auto sent = detail::sendAll(fd_, std::string(1, kDelimiter) + request.dump() + "\n",
				    Clock::now() + timeout, "guest agent socket " + socketPath_);
	if (!sent && sent.error().errorClass == kTimeout)
		return fail(kTimeout, "could not send " + command + " to the guest agent within " + ms(timeout) +
					       " on " + socketPath_);
	return sent;
}

} // namespace qmp
