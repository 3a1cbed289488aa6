// Keeps the benchmark working without running it in full: run-bench, as a
// user runs it, on a 64 MiB disk, without peers (they would need apt and
// minutes) and without dropping the page cache (which would disturb every
// other test on the machine), with a second store given by --store as a
// file:// URL, the way a RADOS or S3 store is given (those need a Ceph
// cluster: by hand, --ceph), and with the 3-disk set (--sets) and one and
// two parallel jobs through a virtsnapd (--parallel-jobs 1,2). Checked: the
// JSON has the four virtsnap rows of each store with positive numbers, the
// restores are identical to the disk (qemu-img compare, inside run-bench),
// the set and job rows stored every disk's own data, and the limit was
// measured. No time is asserted: speed is the benchmark's business, not the
// test suite's.
#include <json-c/json.h>

#include "json/json.h"
#include "tests/support/test_env.h"

namespace virtsnap::test {
namespace {

double number(const virtsnap::Json &obj, const char *key)
{
	virtsnap::Json v = obj.get(key);
	return v.isNull() ? -1 : json_object_get_double(v.raw());
}

TEST(BenchSmoke, VirtsnapRowsWithAnIdenticalRestore)
{
	REQUIRE_QEMU();
	REQUIRE_TOOL("python3");
	REQUIRE_TOOL("openssl");
	ASSERT_FALSE(envOr("RUN_BENCH").empty()) << "meson sets RUN_BENCH, VIRTSNAP_BIN and BENCH_DATA_BIN";
	TempDir tmp("vs-bench-smoke");
	std::string out = tmp.file("results.json");
	std::string output;
	int status = runCommand({envOr("RUN_BENCH"), "--size", "64M", "--peers", "none", "--warm", "--limit-seconds",
				 "1", "--workdir", tmp.path(), "--out", out, "--store", "file://" + tmp.file("stores"),
				 "--sets", "--parallel-jobs", "1,2", "--virtsnap", envOr("VIRTSNAP_BIN"),
				 "--virtsnapd", envOr("VIRTSNAPD_BIN"), "--bench-data", envOr("BENCH_DATA_BIN")},
				&output);
	ASSERT_EQ(status, 0) << output;
	EXPECT_NE(output.find("virtsnap         full"), std::string::npos) << output;
	EXPECT_NE(output.find("virtsnap local   full"), std::string::npos) << output;

	std::string text = readFile(out);
	auto doc = virtsnap::Json::parse(text);
	ASSERT_TRUE(doc) << text;

	const char *ops[] = {"full", "incremental 1%", "incremental 10%", "restore"};
	virtsnap::Json rows = doc->get("rows");
	ASSERT_EQ(rows.size(), 12u) << text;
	for (size_t j = 0; j < 8; j++) {
		size_t i = j % 4;
		virtsnap::Json r = rows.at(j);
		SCOPED_TRACE(std::string(j < 4 ? "local store in the work directory: " : "--store file://: ") + ops[i]);
		EXPECT_EQ(r.getString("tool").value_or(""), j < 4 ? "virtsnap" : "virtsnap local");
		EXPECT_EQ(r.getString("op").value_or(""), ops[i]);
		// The second store's rows are compared with the first's.
		EXPECT_GT(number(r, "ratio_to_virtsnap"), 0);
		EXPECT_GT(number(r, "wall_s"), 0);
		EXPECT_GT(number(r, "cpu_s"), 0);
		EXPECT_GT(number(r, "peak_rss_mib"), 0);
		if (i < 3) {
			EXPECT_GT(number(r, "bytes_added"), 0);
			EXPECT_GT(number(r, "store_bytes_added"), 0);
			EXPECT_GT(number(r, "hypervisor_cpu_s"), -1);
			EXPECT_GT(number(r, "point_in_time_s"), 0);
			EXPECT_GE(number(r, "transaction_ms"), 0);
			EXPECT_EQ(r.getString("capture_mode").value_or(""), i == 0 ? "full" : "incremental");
		} else {
			EXPECT_TRUE(r.getBool("identical").value_or(false)) << "the restore differs from the disk";
		}
	}
	// An incremental stores what changed, not the disk again.
	EXPECT_LT(number(rows.at(1), "store_bytes_added"), number(rows.at(0), "store_bytes_added") / 4);
	EXPECT_EQ(rows.at(4).getString("store").value_or(""), "file://" + tmp.file("stores"));

	// Three disks of different data store three times one disk's full, in
	// a set and one by one alike; so do two instances against one.
	double oneDisk = number(rows.at(0), "store_bytes_added");
	struct {
		const char *tool, *op;
		double disks;
	} const more[] = {{"virtsnap set", "full x3 set", 3},
			  {"virtsnap set", "full x3 singles", 3},
			  {"virtsnapd", "full x1 parallel", 1},
			  {"virtsnapd", "full x2 parallel", 2}};
	for (size_t j = 0; j < 4; j++) {
		virtsnap::Json r = rows.at(8 + j);
		SCOPED_TRACE(std::string(more[j].tool) + " " + more[j].op);
		EXPECT_EQ(r.getString("tool").value_or(""), more[j].tool);
		EXPECT_EQ(r.getString("op").value_or(""), more[j].op);
		EXPECT_GT(number(r, "wall_s"), 0);
		EXPECT_GT(number(r, "cpu_s"), 0);
		EXPECT_GT(number(r, "peak_rss_mib"), 0);
		EXPECT_GT(number(r, "cores_busy"), 0);
		EXPECT_GT(number(r, "store_bytes_added"), (more[j].disks - 0.5) * oneDisk);
		EXPECT_LT(number(r, "store_bytes_added"), (more[j].disks + 0.5) * oneDisk);
	}
	EXPECT_GT(number(rows.at(8), "ratio_set_to_singles"), 0);
	EXPECT_GT(number(rows.at(11), "throughput_mbps"), 0);
	EXPECT_GT(number(rows.at(11), "scaling_vs_1_job"), 0);

	virtsnap::Json limits = doc->get("limits");
	for (const char *key : {"sha256_mbps", "aes_256_gcm_mbps", "zstd1_compress_mbps", "seq_read_mbps",
				"seq_read_write_mbps", "full_limit_s", "virtsnap_full_share", "restore_limit_s",
				"restore_read_write_s"})
		EXPECT_GT(number(limits, key), 0) << key;
}

} // namespace
} // namespace virtsnap::test
