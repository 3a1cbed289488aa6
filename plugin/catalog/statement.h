// Thin RAII over sqlite3: a connection that names its file in every error,
// and prepared statements whose values are only ever bound, never pasted
// into SQL text. Internal to the catalog; not thread-safe on its own (the
// Catalog's mutex guards every use).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace virtsnap::catalog {

class Connection;

class Statement
{
public:
	Statement(Statement &&other) noexcept;
	Statement &operator=(Statement &&) = delete;
	Statement(const Statement &) = delete;
	// A cached statement is reset and its bindings cleared for the next
	// use; any other is finalized.
	~Statement();

	// Parameters are 1-based, as in sqlite3_bind_*.
	void bind(int index, std::string_view text);
	void bind(int index, int64_t value);
	void bindNull(int index);

	// true: a row is available; false: done. Errors name the database file.
	Result<bool> step();
	// Runs a statement that returns no rows (or ignores them), then
	// resets it so that it can be bound and run again.
	Result<void> run();
	// Back to before the first step; bindings stay.
	void reset();

	std::string text(int column) const;
	int64_t integer(int column) const;
	bool isNull(int column) const;

private:
	friend class Connection;
	Statement(Connection &conn, sqlite3_stmt *stmt, bool cached) : conn_(&conn), stmt_(stmt), cached_(cached) {}

	Connection *conn_;
	sqlite3_stmt *stmt_;
	bool cached_;
};

class Connection
{
public:
	// Opens (creating if needed) `file` with SQLITE_OPEN_NOMUTEX: the owner
	// serialises every call.
	static Result<Connection> open(const std::filesystem::path &file);
	Connection(Connection &&other) noexcept;
	Connection &operator=(Connection &&) = delete;
	Connection(const Connection &) = delete;
	~Connection();

	// A statement prepared once and kept for the connection's lifetime: for
	// the fixed SQL of the API (the text is the cache key).
	Result<Statement> cached(const std::string &sql);
	// A statement prepared for one use: for SQL built per call (filters).
	Result<Statement> prepare(const std::string &sql);
	// Runs SQL without parameters, possibly several statements (schema,
	// pragmas, BEGIN/COMMIT).
	Result<void> exec(const std::string &sql);

	// Whether no transaction is open (sqlite3_get_autocommit): SQLite
	// rolls back by itself on some errors (full disk, I/O), and callers
	// must notice that their transaction is gone.
	bool autocommit() const;
	int changes() const;

	// The error for the last failure on this connection: IOError with the
	// file, what was being done and SQLite's message (InsufficientStorage
	// for SQLITE_FULL).
	Error error(std::string_view what, int rc) const;
	const std::filesystem::path &file() const { return file_; }

private:
	Connection(sqlite3 *db, std::filesystem::path file) : db_(db), file_(std::move(file)) {}

	sqlite3 *db_;
	std::filesystem::path file_;
	std::unordered_map<std::string, sqlite3_stmt *> cache_;
};

} // namespace virtsnap::catalog
