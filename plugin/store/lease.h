// Leases on a store that many processes and hosts share (FORMAT.md,
// "Leases"). gc deletes chunks that nothing references; a snapshot in
// flight references chunks that are not yet named by its manifest (its own
// new ones, and old ones it found by dedup), and a restore or verify reads
// chunks. So each of them holds a shared lease while it works, and gc an
// exclusive one: gc runs alone.
//
// A lease is an object under locks/ that its holder rewrites every
// renewInterval. It is held while the backend's clock says it was written
// less than `duration` ago, and, for a holder on this host, while its
// process lives, so a crashed holder blocks nobody past its lease (nor at
// all on its own host). Taking a lease writes the object first and then
// lists the others: of two conflicting takers, at least one sees the other
// and gives way.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "backend.h"

namespace virtsnap::store {

struct LeaseOptions {
	std::chrono::seconds duration{300};
	std::chrono::seconds renewInterval{60};
};

class Lease
{
public:
	enum class Kind { Shared, Exclusive };

	// IncorrectState naming the holder (host, process, what it does) when
	// a conflicting lease is held: for a shared one, an exclusive; for an
	// exclusive one, any.
	static Result<std::unique_ptr<Lease>> acquire(Backend &backend, Kind kind, const std::string &purpose,
						      LeaseOptions options = {});
	// Stops renewing and removes the lease's object.
	~Lease();
	Lease(const Lease &) = delete;
	Lease &operator=(const Lease &) = delete;

	// Whether the lease surely still holds: renewed recently enough that
	// no other host can have judged it expired. A holder must check this
	// before it relies on the lease for a step it cannot undo (a commit,
	// a deletion); false once a renewal has failed for too long.
	bool held() const;
	const std::string &name() const { return name_; }

private:
	Lease(Backend &backend, std::string name, std::string body, LeaseOptions options);
	void renewLoop();

	Backend &backend_;
	const std::string name_;
	const std::string body_;
	const LeaseOptions options_;
	std::atomic<int64_t> renewedAt_; // steady clock, ns: the last write that succeeded
	std::mutex mutex_;
	std::condition_variable stop_;
	bool stopping_ = false;
	std::thread renewer_;
};

// Leases that are held now: "host pid purpose" of each, for messages and
// tests. Expired ones are not listed.
Result<std::vector<std::string>> heldLeases(Backend &backend, LeaseOptions options = {});

// Removes the objects of leases that no longer hold (their holders died or
// were cut off); gc does it under its own. Returns how many.
Result<uint64_t> removeStaleLeases(Backend &backend, LeaseOptions options = {});

} // namespace virtsnap::store
