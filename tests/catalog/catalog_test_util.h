// Shared by the catalog tests: a fresh directory per test, rows with every
// field set to something other than its default, and raw SQLite access to
// look at the file behind the Catalog's back.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "core/error.h"
#include "tests/support/core_test_util.h"
#include "tests/support/test_env.h"

namespace virtsnap::catalog::test {

namespace fs = std::filesystem;

using virtsnap::test::codeOf;
using virtsnap::test::describe;

// "snap-" + 17 hex digits, distinct per n and ordered as n is.
inline std::string snapId(unsigned n)
{
	char buf[32];
	std::snprintf(buf, sizeof(buf), "snap-%017x", n);
	return buf;
}

inline std::string volId(unsigned n)
{
	char buf[32];
	std::snprintf(buf, sizeof(buf), "vol-%017x", n);
	return buf;
}

// "2026-11-23T02:41:07.123Z" shifted by n seconds (n < 86400).
inline std::string isoTime(unsigned n, unsigned millis = 123)
{
	char buf[40];
	std::snprintf(buf, sizeof(buf), "2026-11-23T%02u:%02u:%02u.%03uZ", n / 3600, n / 60 % 60, n % 60, millis);
	return buf;
}

// A snapshot with every field away from its default, distinct per n.
inline SnapshotRow fullSnapshot(unsigned n)
{
	SnapshotRow r;
	r.snapshotId = snapId(n);
	r.volumeId = volId(n % 3);
	r.state = SnapshotState::Completed;
	r.stateMessage = "message " + std::to_string(n);
	r.progress = 100;
	r.startTime = isoTime(n);
	r.completionTime = isoTime(n + 30);
	r.description = "nightly \u00e9t\u00e9 \u2603 \U0001F4BE #" + std::to_string(n);
	r.name = "name-" + std::to_string(n);
	r.ownerId = "123456789012";
	r.consistencyLevel = "application";
	r.encrypted = true;
	r.kmsKeyId = "00112233445566" + std::to_string(10 + n % 90);
	r.volumeSize = (uint64_t(1) << 63) + n; // above int64's range
	r.bytesAdded = 4096 * uint64_t(n + 1);
	r.snapshotSetId = "ssid-" + std::to_string(n);
	r.parentSnapshotId = snapId(n + 1000);
	r.captureMode = "incremental";
	r.captureReason = "reason " + std::to_string(n);
	r.quiesceNote = "agent said \"no\"";
	r.diskId = "vd" + std::string(1, char('a' + n % 26));
	r.instanceName = "web-\u00fc-" + std::to_string(n);
	r.freezeMillis = 150 + n;
	r.deleteRequested = true;
	r.sourceSnapshotId = snapId(n + 2000);
	r.sourceStore = "s3://bucket/prefix?endpoint=http://rgw:7480";
	r.bytesTransferred = 65536 * uint64_t(n + 2);
	r.tags = {{"Name", "db \u00e4 " + std::to_string(n)}, {"env", "prod"}, {"\u30ad\u30fc", "\u5024"}};
	r.productCodes = {"code" + std::to_string(n) + ":marketplace", "dp" + std::to_string(n) + ":devpay"};
	return r;
}

// A plain snapshot for the query tests: only what they look at.
inline SnapshotRow snapshot(unsigned n, const std::string &volumeId, const std::string &state,
			    const std::string &startTime, const std::string &description = "", Tags tags = {})
{
	SnapshotRow r;
	r.snapshotId = snapId(n);
	r.volumeId = volumeId;
	r.state = snapshotStateNamed(state).value();
	r.startTime = startTime;
	r.description = description;
	r.ownerId = "self";
	r.tags = std::move(tags);
	return r;
}

inline std::vector<std::string> idsOf(const std::vector<SnapshotRow> &rows)
{
	std::vector<std::string> out;
	for (const SnapshotRow &r : rows)
		out.push_back(r.snapshotId);
	return out;
}

// A raw connection to the catalog's file, for what the API does not show.
class RawDb
{
public:
	explicit RawDb(const fs::path &file)
	{
		EXPECT_EQ(sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK) << file;
		sqlite3_busy_timeout(db_, 5000);
	}
	~RawDb() { sqlite3_close_v2(db_); }
	RawDb(const RawDb &) = delete;
	RawDb &operator=(const RawDb &) = delete;

	// The first column of the first row as text ("" when none).
	std::string query(const std::string &sql)
	{
		sqlite3_stmt *st = nullptr;
		if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
			ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
			return "";
		}
		std::string out;
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			out = reinterpret_cast<const char *>(sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		return out;
	}

	void exec(const std::string &sql)
	{
		char *err = nullptr;
		if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK)
			ADD_FAILURE() << sql << ": " << (err ? err : "?");
		sqlite3_free(err);
	}

private:
	sqlite3 *db_ = nullptr;
};

// A fresh directory per test, removed after.
class CatalogDirTest : public ::testing::Test
{
protected:
	fs::path file() const { return root_ / "catalog.sqlite"; }

	std::unique_ptr<Catalog> openCatalog()
	{
		auto c = Catalog::open(file());
		EXPECT_TRUE(c) << describe(c);
		return c ? std::move(*c) : nullptr;
	}

	virtsnap::test::TempDir tmp_{"vs-catalog-test"};
	fs::path root_{tmp_.path()};
};

} // namespace virtsnap::catalog::test
