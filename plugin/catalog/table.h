// How each row struct is stored: a Table names its columns beside the
// members they hold, once, and the same list writes rows (the upsert's SQL
// and its bindings) and reads them back, so the SQL, the binding and the
// reading cannot drift apart. The reads and writes every kind of row shares
// are here too; what is particular to one kind stays in its own file.
// Internal to the catalog: the caller holds the Catalog's mutex and a
// transaction.
#pragma once

#include <concepts>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "catalog.h"
#include "statement.h"

namespace virtsnap::catalog {

// The row member a column holds: one of the types the catalog stores.
template<typename Row>
using Member = std::variant<std::string Row::*, int Row::*, int64_t Row::*, uint64_t Row::*, bool Row::*,
			    SnapshotState Row::*, JobState Row::*, std::vector<std::string> Row::*>;

// {"bitmaps_suspect", &VolumeRow::bitmapsSuspect, kReadOnly}
inline constexpr bool kReadOnly = true;

template<typename Row>
struct Column {
	Column(const char *name, Member<Row> member, bool readOnly = false)
		: name(name), member(member), readOnly(readOnly)
	{
	}

	const char *name;
	Member<Row> member;
	// Not written by the upsert: a setter of its own changes it.
	bool readOnly;
};

template<typename Row>
struct Table {
	const char *name;
	// Names a row in the error for a value that cannot be read: "job".
	const char *noun;
	// The primary key (a string) first; rows are read in this order.
	std::vector<Column<Row>> columns;
	// Prefixes the columns a SELECT lists ("s": the snapshot filters of
	// snapshot_query.h speak of the table by that alias).
	const char *alias = "";
	// Runs on each row read, for what the columns cannot say on their own.
	void (*afterRead)(const Statement &st, Row &row) = nullptr;
};

// Snapshots and volumes carry tags, kept in the tags table under their id.
template<typename Row>
concept Tagged = requires(Row &row) { row.tags; };

// Integers of every width are stored as int64: two's complement, so sizes
// above 2^63 come back intact. States are stored by their names, lists as
// a JSON array.
template<std::integral T>
void bindValue(Statement &st, int i, T value)
{
	st.bind(i, int64_t(value));
}
void bindValue(Statement &st, int i, const std::string &value);
void bindValue(Statement &st, int i, SnapshotState value);
void bindValue(Statement &st, int i, JobState value);
void bindValue(Statement &st, int i, const std::vector<std::string> &value);

// Fails (StoreCorrupted, saying what is wrong with the value) only for what
// this code cannot have written: a job state it does not know, a list that
// is not one. An unknown snapshot state reads as Error: see snapshot_rows.cc.
template<std::integral T>
Result<void> readValue(const Statement &st, int i, T &value)
{
	value = T(st.integer(i));
	return {};
}
Result<void> readValue(const Statement &st, int i, std::string &value);
Result<void> readValue(const Statement &st, int i, SnapshotState &value);
Result<void> readValue(const Statement &st, int i, JobState &value);
Result<void> readValue(const Statement &st, int i, std::vector<std::string> &value);

std::string toJsonArray(const std::vector<std::string> &items);

Result<void> writeTags(Connection &conn, const std::string &resourceId, const Tags &tags);
Result<Tags> readTags(Connection &conn, const std::string &resourceId);

template<typename Row>
const std::string &idOf(const Table<Row> &table, const Row &row)
{
	return row.*std::get<std::string Row::*>(table.columns.front().member);
}

// "SELECT s.a, s.b FROM snapshots s": every column, in the order readRow
// expects.
template<typename Row>
std::string selectSql(const Table<Row> &table)
{
	const std::string alias = table.alias;
	std::string sql = "SELECT ";
	for (size_t i = 0; i < table.columns.size(); i++)
		sql += (i > 0 ? ", " : "") + (alias.empty() ? "" : alias + ".") + table.columns[i].name;
	sql += std::string(" FROM ") + table.name;
	return alias.empty() ? sql : sql + " " + alias;
}

template<typename Row>
std::string insertSql(const Table<Row> &table)
{
	std::string names, params;
	for (const Column<Row> &column : table.columns) {
		if (column.readOnly)
			continue;
		names += (names.empty() ? "" : ", ") + std::string(column.name);
		params += params.empty() ? "?" : ", ?";
	}
	return std::string("INSERT INTO ") + table.name + " (" + names + ") VALUES (" + params + ")";
}

// An insert that replaces every column put writes when the key exists.
template<typename Row>
std::string upsertSql(const Table<Row> &table)
{
	std::string set;
	for (size_t i = 1; i < table.columns.size(); i++) {
		if (table.columns[i].readOnly)
			continue;
		const std::string name = table.columns[i].name;
		set += (set.empty() ? "" : ", ") + name + " = excluded." + name;
	}
	return insertSql(table) + " ON CONFLICT (" + table.columns.front().name + ") DO UPDATE SET " + set;
}

// Binds the columns insertSql and upsertSql name, from 1.
template<typename Row>
void bindRow(Statement &st, const Table<Row> &table, const Row &row)
{
	int i = 1;
	for (const Column<Row> &column : table.columns) {
		if (!column.readOnly)
			std::visit([&](auto member) { bindValue(st, i++, row.*member); }, column.member);
	}
}

// The row at the statement's current result, as selectSql lists it; its
// tags are not read here.
template<typename Row>
Result<Row> readRow(const Statement &st, const Table<Row> &table, const std::filesystem::path &file)
{
	Row row;
	for (int i = 0; i < int(table.columns.size()); i++) {
		auto read = std::visit([&](auto member) { return readValue(st, i, row.*member); },
				       table.columns[i].member);
		if (!read) {
			Error e = read.error();
			e.message = "catalog " + file.string() + ": " + table.noun + " " + st.text(0) + ": " +
				    table.columns[i].name + ": " + e.message;
			return std::unexpected(e);
		}
	}
	if (table.afterRead)
		table.afterRead(st, row);
	return row;
}

// Steps `st` to its end: a row from each result, with its tags.
template<typename Row>
Result<std::vector<Row>> readRows(Connection &conn, Statement &st, const Table<Row> &table)
{
	std::vector<Row> rows;
	for (;;) {
		VS_ASSIGN(bool more, st.step());
		if (!more)
			break;
		VS_ASSIGN(Row row, readRow(st, table, conn.file()));
		rows.push_back(std::move(row));
	}
	if constexpr (Tagged<Row>) {
		for (Row &row : rows) {
			VS_ASSIGN(row.tags, readTags(conn, idOf(table, row)));
		}
	}
	return rows;
}

// `sql` + " WHERE <key> = ?", with `id` bound.
template<typename Row>
Result<Statement> byId(Connection &conn, const Table<Row> &table, const std::string &sql, const std::string &id)
{
	VS_ASSIGN(Statement st, conn.cached(sql + " WHERE " + table.columns.front().name + " = ?"));
	st.bind(1, id);
	return st;
}

template<typename Row>
Result<std::optional<Row>> getRow(Connection &conn, const Table<Row> &table, const std::string &id)
{
	VS_ASSIGN(Statement st, byId(conn, table, selectSql(table), id));
	VS_ASSIGN(std::vector<Row> rows, readRows(conn, st, table));
	if (rows.empty())
		return std::optional<Row>();
	return std::optional<Row>(std::move(rows.front()));
}

template<typename Row>
Result<bool> rowExists(Connection &conn, const Table<Row> &table, const std::string &id)
{
	VS_ASSIGN(Statement st, byId(conn, table, std::string("SELECT 1 FROM ") + table.name, id));
	return st.step();
}

// Upsert; a tagged row's tags are replaced with row.tags.
template<typename Row>
Result<void> putRow(Connection &conn, const Table<Row> &table, const Row &row)
{
	VS_ASSIGN(Statement st, conn.cached(upsertSql(table)));
	bindRow(st, table, row);
	VS_TRY(st.run());
	if constexpr (Tagged<Row>)
		return writeTags(conn, idOf(table, row), row.tags);
	return {};
}

// With its tags; no error when it is not there.
template<typename Row>
Result<void> removeRow(Connection &conn, const Table<Row> &table, const std::string &id)
{
	VS_ASSIGN(Statement st, byId(conn, table, std::string("DELETE FROM ") + table.name, id));
	VS_TRY(st.run());
	if constexpr (Tagged<Row>)
		return writeTags(conn, id, {});
	return {};
}

} // namespace virtsnap::catalog
