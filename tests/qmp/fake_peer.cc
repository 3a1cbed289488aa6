#include "tests/qmp/fake_peer.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include <cerrno>
#include <cstring>

namespace virtsnap::test {

namespace {

using Clock = std::chrono::steady_clock;

// Long enough for a loaded machine, short enough that a broken client
// fails the test instead of hanging it.
constexpr int kStepTimeoutMs = 10000;

std::string substituteId(std::string text, const std::string &id)
{
	const std::string marker = "@ID@";
	for (size_t pos = text.find(marker); pos != std::string::npos; pos = text.find(marker, pos + id.size()))
		text.replace(pos, marker.size(), id);
	return text;
}

std::string printable(const std::string &bytes)
{
	std::string out;
	for (unsigned char c : bytes.substr(0, 200)) {
		if (c >= 0x20 && c < 0x7f) {
			out += static_cast<char>(c);
		} else {
			char hex[8];
			std::snprintf(hex, sizeof(hex), "\\x%02x", c);
			out += hex;
		}
	}
	return out;
}

} // namespace

FakePeer::FakePeer(std::string socketPath) : path_(std::move(socketPath))
{
	if (::pipe2(stopPipe_, O_CLOEXEC) < 0) {
		failure_ = std::string("pipe2: ") + std::strerror(errno);
		return;
	}
	struct sockaddr_un addr = {};
	addr.sun_family = AF_UNIX;
	if (path_.size() >= sizeof(addr.sun_path)) {
		failure_ = "socket path too long: " + path_;
		return;
	}
	std::memcpy(addr.sun_path, path_.data(), path_.size());
	listenFd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listenFd_ < 0 || ::bind(listenFd_, reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) < 0 ||
	    ::listen(listenFd_, 4) < 0)
		failure_ = "cannot listen on " + path_ + ": " + std::strerror(errno);
}

FakePeer::~FakePeer()
{
	finish();
	for (int fd : {listenFd_, clientFd_, stopPipe_[0], stopPipe_[1]})
		if (fd >= 0)
			::close(fd);
}

FakePeer &FakePeer::greet()
{
	send(R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": ["oob"]}})"
	     "\r\n");
	expect("qmp_capabilities");
	return reply("{}");
}

FakePeer &FakePeer::expect(const std::string &command)
{
	steps_.push_back({"expect " + command, [this, command](std::string &failure) {
				  virtsnap::Json message;
				  if (!readCommand(message, failure))
					  return false;
				  received_.push_back(message);
				  if (message.getString("execute") != command) {
					  failure = "got " + message.dump();
					  return false;
				  }
				  if (message.has("id"))
					  lastId_ = message.get("id").dump();
				  else if (message.get("arguments").has("id"))
					  lastId_ = message.get("arguments").get("id").dump();
				  else
					  lastId_ = "null";
				  return true;
			  }});
	return *this;
}

FakePeer &FakePeer::expectDelimiter()
{
	steps_.push_back({"expect 0xFF", [this](std::string &failure) {
				  while (buffer_.empty()) {
					  if (!fill(failure))
						  return false;
				  }
				  if (buffer_[0] != '\xff') {
					  failure = "got " + printable(buffer_);
					  return false;
				  }
				  buffer_.erase(0, 1);
				  return true;
			  }});
	return *this;
}

FakePeer &FakePeer::expectSync()
{
	expectDelimiter();
	return expect("guest-sync-delimited");
}

FakePeer &FakePeer::send(const std::string &text, size_t chunk, Duration delay)
{
	steps_.push_back({"send " + printable(text), [this, text, chunk, delay](std::string &failure) {
				  std::string bytes = substituteId(text, lastId_);
				  size_t step = chunk == 0 ? bytes.size() : chunk;
				  // The client may be done before the trailing bytes are
				  // sent: finish() then only cuts the delays short.
				  bool hurry = false;
				  for (size_t pos = 0; pos < bytes.size(); pos += step) {
					  if (!sendBytes(bytes.substr(pos, hurry ? std::string::npos : step), failure))
						  return false;
					  if (hurry)
						  break;
					  if (delay.count() > 0 && pos + step < bytes.size() && !sleep(delay))
						  hurry = true;
				  }
				  return true;
			  }});
	return *this;
}

FakePeer &FakePeer::reply(const std::string &value)
{
	return send("{\"return\": " + value + ", \"id\": @ID@}\r\n");
}

FakePeer &FakePeer::replyError(const std::string &errorClass, const std::string &desc)
{
	virtsnap::Json error = virtsnap::Json::object();
	error.set("class", virtsnap::Json::string(errorClass));
	error.set("desc", virtsnap::Json::string(desc));
	return send("{\"error\": " + error.dump() + ", \"id\": @ID@}\r\n");
}

FakePeer &FakePeer::pause(Duration duration)
{
	steps_.push_back({"pause", [this, duration](std::string &failure) {
				  if (sleep(duration))
					  return true;
				  failure = "stopped by finish()";
				  return false;
			  }});
	return *this;
}

FakePeer &FakePeer::hangUp()
{
	steps_.push_back({"hang up", [this](std::string &) {
				  ::close(clientFd_);
				  clientFd_ = -1;
				  return true;
			  }});
	return *this;
}

void FakePeer::start()
{
	if (!failure_.empty())
		return;
	thread_ = std::thread([this] { run(); });
}

std::string FakePeer::finish()
{
	if (!finished_) {
		finished_ = true;
		if (thread_.joinable()) {
			char byte = 0;
			(void)!::write(stopPipe_[1], &byte, 1);
			thread_.join();
		}
	}
	return failure_;
}

void FakePeer::run()
{
	std::string failure;
	if (!acceptClient(failure)) {
		failure_ = "accept: " + failure;
		return;
	}
	for (size_t i = 0; i < steps_.size(); i++) {
		if (!steps_[i].run(failure)) {
			failure_ = "step " + std::to_string(i + 1) + " (" + steps_[i].what + "): " + failure;
			return;
		}
	}
	// Script done: anything the client still sends was not scripted.
	if (buffer_.find_first_not_of(" \t\r\n") != std::string::npos) {
		failure_ = "unscripted data after the last step: " + printable(buffer_);
		return;
	}
	while (clientFd_ >= 0) {
		struct pollfd pfds[2] = {{clientFd_, POLLIN, 0}, {stopPipe_[0], POLLIN, 0}};
		int n = ::poll(pfds, 2, 30000);
		if (n <= 0 || (pfds[1].revents & POLLIN))
			return;
		char chunk[4096];
		ssize_t got = ::recv(clientFd_, chunk, sizeof(chunk), 0);
		if (got > 0) {
			failure_ = "unscripted data after the last step: " + printable(std::string(chunk, got));
			return;
		}
		if (got == 0 || (errno != EINTR && errno != EAGAIN))
			return;
	}
}

bool FakePeer::acceptClient(std::string &failure)
{
	struct pollfd pfds[2] = {{listenFd_, POLLIN, 0}, {stopPipe_[0], POLLIN, 0}};
	int n = ::poll(pfds, 2, kStepTimeoutMs);
	if (n == 0) {
		failure = "no client connected";
		return false;
	}
	if (n < 0 || (pfds[1].revents & POLLIN)) {
		failure = "stopped by finish() before a client connected";
		return false;
	}
	clientFd_ = ::accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (clientFd_ < 0) {
		failure = std::strerror(errno);
		return false;
	}
	return true;
}

bool FakePeer::fill(std::string &failure)
{
	if (clientFd_ < 0) {
		failure = "connection already closed";
		return false;
	}
	for (;;) {
		struct pollfd pfds[2] = {{clientFd_, POLLIN, 0}, {stopPipe_[0], POLLIN, 0}};
		int n = ::poll(pfds, 2, kStepTimeoutMs);
		if (n == 0) {
			failure = "client sent nothing for " + std::to_string(kStepTimeoutMs) + " ms";
			return false;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (pfds[1].revents & POLLIN)) {
			failure = "stopped by finish()";
			return false;
		}
		char chunk[4096];
		ssize_t got = ::recv(clientFd_, chunk, sizeof(chunk), 0);
		if (got > 0) {
			buffer_.append(chunk, static_cast<size_t>(got));
			return true;
		}
		if (got == 0) {
			failure = "client closed the connection";
			return false;
		}
		if (errno != EINTR && errno != EAGAIN) {
			failure = std::string("recv: ") + std::strerror(errno);
			return false;
		}
	}
}

bool FakePeer::readCommand(virtsnap::Json &message, std::string &failure)
{
	for (;;) {
		size_t start = buffer_.find_first_not_of(" \t\r\n");
		buffer_.erase(0, start == std::string::npos ? buffer_.size() : start);
		if (!buffer_.empty()) {
			json_tokener *tok = json_tokener_new();
			json_object *obj = json_tokener_parse_ex(tok, buffer_.data(), static_cast<int>(buffer_.size()));
			enum json_tokener_error err = json_tokener_get_error(tok);
			size_t end = json_tokener_get_parse_end(tok);
			json_tokener_free(tok);
			if (err == json_tokener_success) {
				buffer_.erase(0, end);
				message = virtsnap::Json(obj);
				return true;
			}
			if (err != json_tokener_continue) {
				failure = "client sent invalid JSON: " + printable(buffer_);
				return false;
			}
		}
		if (!fill(failure))
			return false;
	}
}

bool FakePeer::sendBytes(const std::string &bytes, std::string &failure)
{
	size_t pos = 0;
	while (pos < bytes.size()) {
		if (clientFd_ < 0) {
			failure = "connection already closed";
			return false;
		}
		ssize_t n = ::send(clientFd_, bytes.data() + pos, bytes.size() - pos, MSG_NOSIGNAL);
		if (n > 0) {
			pos += static_cast<size_t>(n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfds[2] = {{clientFd_, POLLOUT, 0}, {stopPipe_[0], POLLIN, 0}};
			int ready = ::poll(pfds, 2, kStepTimeoutMs);
			if (ready <= 0 || (pfds[1].revents & POLLIN)) {
				failure = "client did not read what was sent";
				return false;
			}
			continue;
		}
		failure = std::string("send: ") + std::strerror(errno);
		return false;
	}
	return true;
}

bool FakePeer::sleep(Duration duration)
{
	auto deadline = Clock::now() + duration;
	for (;;) {
		// Rounded up: a 1 ms pause must not become no pause at all.
		auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
		if (left.count() <= 0)
			return true;
		struct pollfd pfd = {stopPipe_[0], POLLIN, 0};
		int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
		if (n > 0)
			return false;
	}
}

} // namespace virtsnap::test
