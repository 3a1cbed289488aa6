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
inline constexpr const char *kAccessDenied = "AccessDenied";
inline constexpr const char *kConcurrentLimit = "ConcurrentSnapshotLimitExceeded";
inline constexpr const char *kIdempotentMismatch = "IdempotentParameterMismatch";
inline constexpr const char *kSnapshotLocked = "SnapshotLocked";
// DLM's and the Recycle Bin's name for a policy or rule that does not
// exist; the Recycle Bin's for a change a locked rule refuses.
inline constexpr const char *kResourceNotFound = "ResourceNotFoundException";
inline constexpr const char *kRuleLocked = "ConflictException";
// KMS's name for a key (or grant) that does not exist.
inline constexpr const char *kKeyNotFound = "NotFoundException";
// The store's backend: an object that is not there (the store turns it into
// what it means: a snapshot not found, a store damaged); a create() of a
// name that is taken; a store that cannot be reached or refuses us.
inline constexpr const char *kObjectNotFound = "ObjectNotFound";
inline constexpr const char *kObjectExists = "ObjectExists";
inline constexpr const char *kStoreUnavailable = "StoreUnavailable";
// What this store's backend cannot do (an S3 Object Lock retention on a
// directory or RADOS).
inline constexpr const char *kUnsupported = "UnsupportedOperation";
} // namespace errc

struct Error {
	std::string code;
	std::string message;

	// The one line a user sees: "Code: message".
	std::string toString() const { return code + ": " + message; }
};

// [[nodiscard]]: an error nobody looked at is a bug, so dropping a Result
// does not compile (under -Werror). Where dropping one is right, say why
// beside a (void) cast.
template<typename T>
class [[nodiscard]] Result : public std::expected<T, Error>
{
public:
	using std::expected<T, Error>::expected;
	Result(std::expected<T, Error> other) : std::expected<T, Error>(std::move(other)) {}
};

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

// Declares or assigns `lhs` from an expression returning Result<T> (not
// void), or propagates its error:
//   VS_ASSIGN(auto store, store::Store::open(dir, keyFile));
//   VS_ASSIGN(row.size, imageSize(path));
// A statement of its own: not the body of an unbraced if or loop.
#define VS_ASSIGN(lhs, expr) VS_ASSIGN_(VS_CONCAT_(vs_assign_r_, __LINE__), lhs, expr)
#define VS_ASSIGN_(tmp, lhs, expr)                                  \
	auto tmp = (expr);                                          \
	if (!tmp)                                                   \
		return std::unexpected(std::move(tmp.error()));     \
	lhs = std::move(*tmp)
#define VS_CONCAT_(a, b) VS_CONCAT2_(a, b)
#define VS_CONCAT2_(a, b) a##b
