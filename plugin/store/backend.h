// Where a store's objects live: a directory, a RADOS pool, an S3 bucket.
// The contract every backend keeps (FORMAT.md, "Backends"), which one test
// suite checks on each (tests/store/backend_test.cc):
//  - objects have flat names, '/'-separated ("packs/ab/<id>.pack");
//  - put() is atomic: a reader sees the old object or the new one, never a
//    part, whatever crashes, and a put() that returned is durable;
//  - create() is put() that fails with ObjectExists when the name is
//    taken; of concurrent creators exactly one succeeds;
//  - get() and getRange() read what a put() wrote, or fail with
//    ObjectNotFound; list() sees every object put() before it started;
//  - remove() of an absent object is not an error;
//  - a writer (openWriter) shows nothing until commit(); dropped, it leaves
//    nothing a reader sees, at most garbage for sweepPartial();
//  - retain() is optional: a backend that cannot keep an object from
//    being destroyed (a directory, RADOS) says so with retains() false.
// Errors name the backend and the cause in one line, within bounded time:
// an unreachable store is an error, never a hang.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "core/bytes.h"
#include "core/error.h"

namespace virtsnap::store {

struct ObjectInfo {
	std::string name;
	uint64_t size = 0;
	// The backend's own clock (file mtime, RADOS mtime, S3 Last-Modified):
	// comparable with now() of the same backend, not with this host's.
	std::chrono::system_clock::time_point modified;
};

// Streams one object into place: what is appended becomes visible, whole,
// at commit(); destroyed before, it is dropped.
class ObjectWriter
{
public:
	virtual ~ObjectWriter() = default;
	virtual Result<void> append(std::span<const uint8_t> data) = 0;
	virtual Result<void> commit() = 0;
	virtual uint64_t size() const = 0;
};

// How an object is retained (S3 Object Lock's modes): in governance mode
// credentials allowed to bypass it may still destroy it, in compliance
// mode nobody can before the time is up.
enum class RetentionMode { Governance, Compliance };

class Backend
{
public:
	virtual ~Backend() = default;

	// The store's URL, for messages: "/var/lib/virtsnap", "rados://pool/ns",
	// "s3://bucket/prefix".
	virtual std::string describe() const = 0;
	// True when the objects are on this host only (a directory), so host
	// state may sit beside them.
	virtual bool local() const { return false; }

	virtual Result<void> put(const std::string &name, std::span<const uint8_t> data) = 0;
	virtual Result<void> create(const std::string &name, std::span<const uint8_t> data) = 0;
	virtual Result<std::unique_ptr<ObjectWriter>> openWriter(const std::string &name) = 0;
	virtual Result<Bytes> get(const std::string &name) = 0;
	virtual Result<void> getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out) = 0;
	virtual Result<ObjectInfo> stat(const std::string &name) = 0;
	// Every object whose name starts with `prefix`, in no particular order.
	virtual Result<void> list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit) = 0;
	virtual Result<void> remove(const std::string &name) = 0;

	// The backend's clock now, in the terms of ObjectInfo::modified.
	virtual Result<std::chrono::system_clock::time_point> now() = 0;
	// Removes what interrupted writes left behind (temporary files,
	// unfinished uploads) older than `grace`; returns how many and bytes.
	struct Swept {
		uint64_t objects = 0, bytes = 0;
	};
	virtual Result<Swept> sweepPartial(std::chrono::seconds grace, bool dryRun) = 0;

	// Whether the backend itself keeps objects from being destroyed
	// (retain() works): S3 on a bucket with Object Lock.
	virtual Result<bool> retains() { return false; }
	// Keeps the object as it is now from being destroyed before `until`
	// (the backend's clock), in `mode` or more strictly. It only ever
	// strengthens what the object has: a later time, or compliance over
	// governance, never an earlier one, so objects several callers retain
	// keep the latest time and the strictest mode asked. An overwrite or
	// removal afterwards still succeeds but keeps the retained version.
	// UnsupportedOperation where retains() is false.
	virtual Result<void> retain(const std::string &name, RetentionMode mode,
				    std::chrono::system_clock::time_point until);
};

struct BackendSettings {
	// S3: a 0600 file holding the access key id and the secret access key
	// (FORMAT.md says how); empty: $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY.
	std::string s3CredentialsFile;
	// One request that takes longer fails: an unreachable store is an
	// error, never a hang.
	std::chrono::seconds timeout{30};
};

// A backend for a store URL (backend_url.h): a plain path or file:///path,
// rados://POOL[/NS][?conf=FILE&id=NAME], s3://BUCKET[/PREFIX]?endpoint=URL
// [&region=R][&style=path|virtual]. InvalidParameterValue for a URL it
// cannot read; StoreUnavailable, AccessDenied or a missing pool or bucket
// named, within the timeout, for a store it cannot reach.
Result<std::unique_ptr<Backend>> openBackend(const std::string &url, const BackendSettings &settings = {});

} // namespace virtsnap::store
