// Errors of the protocol library: QEMU's own error class where the peer sent
// one, or one of the transport classes below.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace qmp {

// The transport's own classes, beside those QEMU sends.
inline constexpr const char *kConnectionFailed = "ConnectionFailed";
inline constexpr const char *kConnectionClosed = "ConnectionClosed";
inline constexpr const char *kTimeout = "Timeout";
inline constexpr const char *kProtocolError = "ProtocolError";

struct Error {
	// QEMU's error.class ("GenericError", "DeviceNotFound", ...) or one of
	// the transport's above.
	std::string errorClass;
	std::string desc;

	std::string toString() const { return errorClass + ": " + desc; }
};

// [[nodiscard]], so an error cannot be dropped unnoticed.
template<typename T>
class [[nodiscard]] Result : public std::expected<T, Error>
{
public:
	using std::expected<T, Error>::expected;
	Result(std::expected<T, Error> other) : std::expected<T, Error>(std::move(other)) {}
};

inline std::unexpected<Error> fail(std::string errorClass, std::string desc)
{
	return std::unexpected(Error{std::move(errorClass), std::move(desc)});
}

} // namespace qmp
