// The error type every module returns across its boundary (no exceptions
// cross modules). `code` is a stable name: the EC2 error names where one
// fits (InvalidSnapshot.NotFound, ...), else one of the names below; it
// appears in messages and in JSON output so scripts can match on it.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace virtsnap {

namespace errc {
inline constexpr const char *kInvalidParameterValue = "InvalidParameterValue";
inline constexpr const char *kMissingParameter = "MissingParameter";
inline constexpr const char *kSnapshotNotFound = "InvalidSnapshot.NotFound";
inline constexpr const char *kSnapshotIdMalformed = "InvalidSnapshotID.Malformed";
inline constexpr const char *kSnapshotInUse = "InvalidSnapshot.InUse";
inline constexpr const char *kVolumeNotFound = "InvalidVolume.NotFound";
inline constexpr const char *kIncorrectState = "IncorrectState";
inline constexpr const char *kStoreNotInitialized = "StoreNotInitialized";
inline constexpr const char *kStoreExists = "StoreAlreadyInitialized";
inline constexpr const char *kWrongKey = "WrongKey";
inline constexpr const char *kKeyFile = "KeyFileError";
inline constexpr const char *kCorrupt = "StoreCorrupted";
inline constexpr const char *kIo = "IOError";
inline constexpr const char *kNoSpace = "InsufficientStorage";
inline constexpr const char *kHypervisor = "HypervisorError";
inline constexpr const char *kDiskNotFound = "InvalidDisk.NotFound";
inline constexpr const char *kInstanceNotFound = "InvalidInstanceID.NotFound";
inline constexpr const char *kTargetExists = "TargetExists";
inline constexpr const char *kInternal = "InternalError";
} // namespace errc

struct Error {
	std::string code;
	std::string message;

	// The one line a user sees: "Code: message".
	std::string toString() const { return code + ": " + message; }
};

template<typename T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string code, std::string message)
{
	return std::unexpected(Error{std::move(code), std::move(message)});
}

// Error from errno, naming what failed: "open /x: No such file or directory".
// ENOSPC/EDQUOT map to InsufficientStorage so a full disk is named as such.
std::unexpected<Error> failErrno(const std::string &what, int err);

} // namespace virtsnap

// Propagates an error from an expression returning Result<...>.
#define VS_TRY(expr)                                                     \
	do {                                                             \
		auto &&vs_try_r_ = (expr);                               \
		if (!vs_try_r_)                                          \
			return std::unexpected(std::move(vs_try_r_.error())); \
	} while (0)
