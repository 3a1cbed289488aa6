// Idempotency records: the response given to each client token, so that a
// retried request gets the same answer. The daemon's own state, which the
// manifests do not hold (clear() leaves it).
#include "catalog.h"
#include "core/ids.h"

namespace virtsnap::catalog {

Result<void> Catalog::putRequest(const RequestRow &row)
{
	std::lock_guard lock(mutex_);
	std::string now = isoTimeNow();
	return inTransaction(true, [&]() -> Result<void> {
		// Checked under the write lock, so the answer holds until the
		// insert: a conflict is told apart from an I/O error.
		auto exists = conn_.cached("SELECT 1 FROM requests WHERE client_token = ?");
		VS_TRY(exists);
		exists->bind(1, row.clientToken);
		auto found = exists->step();
		VS_TRY(found);
		if (*found)
			return fail(errc::kIncorrectState, "client token '" + row.clientToken + "' is already recorded");
		auto st = conn_.cached(
			"INSERT INTO requests (client_token, request_hash, response, created) VALUES (?, ?, ?, ?)");
		VS_TRY(st);
		st->bind(1, row.clientToken);
		st->bind(2, row.requestHash);
		st->bind(3, row.response);
		st->bind(4, row.created.empty() ? now : row.created);
		return st->run();
	});
}

Result<std::optional<RequestRow>> Catalog::getRequest(const std::string &clientToken)
{
	std::lock_guard lock(mutex_);
	std::optional<RequestRow> out;
	VS_TRY(inTransaction(false, [&]() -> Result<void> {
		auto st = conn_.cached(
			"SELECT client_token, request_hash, response, created FROM requests WHERE client_token = ?");
		VS_TRY(st);
		st->bind(1, clientToken);
		auto row = st->step();
		VS_TRY(row);
		if (*row)
			out = RequestRow{st->text(0), st->text(1), st->text(2), st->text(3)};
		return {};
	}));
	return out;
}

Result<int> Catalog::pruneRequests(const std::string &createdBefore)
{
	std::lock_guard lock(mutex_);
	int removed = 0;
	VS_TRY(inTransaction(true, [&]() -> Result<void> {
		auto st = conn_.cached("DELETE FROM requests WHERE created < ?");
		VS_TRY(st);
		st->bind(1, createdBefore);
		VS_TRY(st->run());
		removed = conn_.changes();
		return {};
	}));
	return removed;
}

} // namespace virtsnap::catalog
