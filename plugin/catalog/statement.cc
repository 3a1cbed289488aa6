#include "statement.h"

#include <sqlite3.h>

#include <utility>

namespace virtsnap::catalog {

namespace {

// The start of a statement's SQL, enough to tell which one failed.
std::string sqlHead(std::string_view sql)
{
	constexpr size_t kMax = 60;
	std::string head(sql.substr(0, kMax));
	for (char &c : head)
		if (c == '\n' || c == '\t')
			c = ' ';
	return sql.size() > kMax ? head + "..." : head;
}

} // namespace

Statement::Statement(Statement &&other) noexcept
	: conn_(other.conn_), stmt_(std::exchange(other.stmt_, nullptr)), cached_(other.cached_)
{
}

Statement::~Statement()
{
	if (!stmt_)
		return;
	if (cached_) {
		sqlite3_reset(stmt_);
		sqlite3_clear_bindings(stmt_);
	} else {
		sqlite3_finalize(stmt_);
	}
}

void Statement::bind(int index, std::string_view text)
{
	// SQLITE_TRANSIENT: SQLite copies, so the caller's string may go away
	// before step().
	sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
}

void Statement::bind(int index, int64_t value)
{
	sqlite3_bind_int64(stmt_, index, value);
}

void Statement::bindNull(int index)
{
	sqlite3_bind_null(stmt_, index);
}

Result<bool> Statement::step()
{
	int rc = sqlite3_step(stmt_);
	if (rc == SQLITE_ROW)
		return true;
	if (rc == SQLITE_DONE)
		return false;
	return std::unexpected(conn_->error(sqlHead(sqlite3_sql(stmt_)), rc));
}

Result<void> Statement::run()
{
	for (;;) {
		auto r = step();
		if (!r) {
			reset();
			return std::unexpected(r.error());
		}
		if (!*r) {
			reset();
			return {};
		}
	}
}

void Statement::reset()
{
	sqlite3_reset(stmt_);
}

std::string Statement::text(int column) const
{
	const unsigned char *p = sqlite3_column_text(stmt_, column);
	int n = sqlite3_column_bytes(stmt_, column);
	return p ? std::string(reinterpret_cast<const char *>(p), size_t(n)) : std::string();
}

int64_t Statement::integer(int column) const
{
	return sqlite3_column_int64(stmt_, column);
}

bool Statement::isNull(int column) const
{
	return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

Result<Connection> Connection::open(const std::filesystem::path &file)
{
	sqlite3 *db = nullptr;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	int rc = sqlite3_open_v2(file.c_str(), &db, flags, nullptr);
	if (rc != SQLITE_OK) {
		std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
		sqlite3_close_v2(db);
		return fail(errc::kIo, "catalog " + file.string() + ": open: " + msg);
	}
	// Extended codes so that errors say e.g. SQLITE_IOERR_FSYNC's message.
	sqlite3_extended_result_codes(db, 1);
	return Connection(db, file);
}

Connection::Connection(Connection &&other) noexcept
	: db_(std::exchange(other.db_, nullptr)), file_(std::move(other.file_)), cache_(std::move(other.cache_))
{
	other.cache_.clear();
}

Connection::~Connection()
{
	for (auto &[sql, stmt] : cache_)
		sqlite3_finalize(stmt);
	if (db_)
		sqlite3_close_v2(db_);
}

Result<Statement> Connection::cached(const std::string &sql)
{
	auto it = cache_.find(sql);
	if (it != cache_.end())
		return Statement(*this, it->second, true);
	sqlite3_stmt *stmt = nullptr;
	int rc = sqlite3_prepare_v3(db_, sql.c_str(), int(sql.size() + 1), SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
	if (rc != SQLITE_OK)
		return std::unexpected(error("prepare " + sqlHead(sql), rc));
	cache_.emplace(sql, stmt);
	return Statement(*this, stmt, true);
}

Result<Statement> Connection::prepare(const std::string &sql)
{
	sqlite3_stmt *stmt = nullptr;
	int rc = sqlite3_prepare_v3(db_, sql.c_str(), int(sql.size() + 1), 0, &stmt, nullptr);
	if (rc != SQLITE_OK)
		return std::unexpected(error("prepare " + sqlHead(sql), rc));
	return Statement(*this, stmt, false);
}

Result<void> Connection::exec(const std::string &sql)
{
	int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
	if (rc != SQLITE_OK)
		return std::unexpected(error(sqlHead(sql), rc));
	return {};
}

bool Connection::autocommit() const
{
	return sqlite3_get_autocommit(db_) != 0;
}

int Connection::changes() const
{
	return sqlite3_changes(db_);
}

Error Connection::error(std::string_view what, int rc) const
{
	// The connection's message matches rc unless another call came in
	// between, which the owner's mutex rules out; errstr is the fallback.
	std::string msg = sqlite3_errcode(db_) == rc ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
	const char *code = (rc & 0xff) == SQLITE_FULL ? errc::kNoSpace : errc::kIo;
	return Error{code, "catalog " + file_.string() + ": " + std::string(what) + ": " + msg};
}

} // namespace virtsnap::catalog
