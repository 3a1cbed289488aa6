// Idempotency records: the response given to each client token, so that a
// retried request gets the same answer. The daemon's own state, which the
// manifests do not hold (clear() leaves it).
#include "catalog.h"
#include "core/ids.h"
#include "table.h"

namespace virtsnap::catalog {

namespace {

const Table<RequestRow> kRequests = {
	.name = "requests",
	.noun = "request",
	.columns = {
		{"client_token", &RequestRow::clientToken},
		{"request_hash", &RequestRow::requestHash},
		{"response", &RequestRow::response},
		{"created", &RequestRow::created},
	},
};

} // namespace

Result<void> Catalog::putRequest(const RequestRow &row)
{
	RequestRow stamped = row;
	if (stamped.created.empty())
		stamped.created = isoTimeNow();
	return transaction([&]() -> Result<void> {
		// Checked under the write lock, so the answer holds until the
		// insert: a conflict is told apart from an I/O error.
		VS_ASSIGN(bool found, rowExists(conn_, kRequests, row.clientToken));
		if (found)
			return fail(errc::kIncorrectState, "client token '" + row.clientToken + "' is already recorded");
		VS_ASSIGN(Statement st, conn_.cached(insertSql(kRequests)));
		bindRow(st, kRequests, stamped);
		return st.run();
	});
}

Result<std::optional<RequestRow>> Catalog::getRequest(const std::string &clientToken)
{
	return reading([&] { return getRow(conn_, kRequests, clientToken); });
}

Result<int> Catalog::pruneRequests(const std::string &createdBefore)
{
	std::lock_guard lock(mutex_);
	int removed = 0;
	VS_TRY(inTransaction(true, [&]() -> Result<void> {
		VS_ASSIGN(Statement st, conn_.cached("DELETE FROM requests WHERE created < ?"));
		st.bind(1, createdBefore);
		VS_TRY(st.run());
		removed = conn_.changes();
		return {};
	}));
	return removed;
}

} // namespace virtsnap::catalog
