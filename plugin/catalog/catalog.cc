// Opening the catalog, and the transactions every member runs in; the rows
// of each kind live in their own file (snapshot_rows.cc, ...).
#include "catalog.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace virtsnap::catalog {

Result<std::unique_ptr<Catalog>> Catalog::open(const std::filesystem::path &file)
{
	// Created here rather than by SQLite so that it is 0600 from the start
	// (SQLite gives the -wal and -shm files the same mode). O_EXCL: an
	// existing file is left to SQLite, even one this process cannot write.
	int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EEXIST)
		return failErrno("catalog " + file.string(), errno);
	if (fd >= 0)
		::close(fd);

	VS_ASSIGN(Connection conn, Connection::open(file));
	std::unique_ptr<Catalog> cat(new Catalog(std::move(conn)));
	Connection &c = cat->conn_;
	// Before anything that may wait for a lock: the WAL switch does.
	VS_TRY(c.exec("PRAGMA busy_timeout = 5000"));
	{
		VS_ASSIGN(Statement st, c.prepare("PRAGMA journal_mode = WAL"));
		VS_ASSIGN(bool row, st.step());
		std::string mode = row ? st.text(0) : std::string();
		if (mode != "wal")
			return fail(errc::kIo, "catalog " + file.string() + ": cannot use WAL (journal mode is '" + mode + "')");
	}
	// FULL: a committed job or request survives a power loss, which the
	// daemon relies on after a crash (NORMAL could lose the last commits).
	VS_TRY(c.exec("PRAGMA synchronous = FULL"));
	VS_TRY(cat->initSchema());
	return cat;
}

Catalog::~Catalog() = default;

Result<void> Catalog::checkTransaction() const
{
	if (depth_ > 0 && conn_.autocommit())
		return fail(errc::kIo, "catalog " + conn_.file().string() +
					       ": the transaction was rolled back after an earlier error");
	return {};
}

Result<void> Catalog::inTransaction(bool write, const std::function<Result<void>()> &body)
{
	VS_TRY(checkTransaction());
	std::string savepoint = "sp" + std::to_string(depth_);
	const bool outer = depth_ == 0;
	VS_TRY(conn_.exec(outer ? (write ? "BEGIN IMMEDIATE" : "BEGIN") : "SAVEPOINT " + savepoint));
	depth_++;
	auto rollback = [&] {
		// Nothing to undo when SQLite already rolled the whole
		// transaction back; the error that did it is what we return.
		if (!conn_.autocommit())
			(void)conn_.exec(outer ? "ROLLBACK" : "ROLLBACK TO " + savepoint + "; RELEASE " + savepoint);
		depth_--;
	};
	Result<void> r;
	try {
		r = body();
	} catch (...) {
		rollback();
		throw;
	}
	if (r)
		r = checkTransaction();
	if (r)
		r = conn_.exec(outer ? "COMMIT" : "RELEASE " + savepoint);
	if (!r) {
		rollback();
		return r;
	}
	depth_--;
	return {};
}

bool Catalog::isEmpty()
{
	auto empty = reading([&]() -> Result<bool> {
		VS_ASSIGN(Statement st,
			  conn_.cached("SELECT EXISTS (SELECT 1 FROM snapshots) OR EXISTS (SELECT 1 FROM volumes)"));
		VS_ASSIGN(bool row, st.step());
		return !row || st.integer(0) == 0;
	});
	// An error counts as empty: the rebuild that follows reports it.
	return !empty || *empty;
}

Result<void> Catalog::clear()
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, [&]() -> Result<void> {
		VS_TRY(conn_.exec("DELETE FROM tags; DELETE FROM snapshots; DELETE FROM volumes"));
		return {};
	});
}

Result<void> Catalog::transaction(const std::function<Result<void>()> &body)
{
	std::lock_guard lock(mutex_);
	return inTransaction(true, body);
}

} // namespace virtsnap::catalog
