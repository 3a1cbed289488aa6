// The man pages and the systemd unit against the binaries they describe:
// every command and option the binaries know is documented, every key of
// the config file too, the version matches, and man and systemd read the
// files without a warning.
#include <regex>

#include "package_test_util.h"

namespace virtsnap::test {
namespace {

// The page's text with roff's escapes for hyphens and fonts undone, so
// "\fB\-\-store\fR" reads "--store".
std::string manText(const std::string &relative)
{
	std::string text = readRequiredFile(sourcePath(relative));
	text = std::regex_replace(text, std::regex(R"(\\f[BIRP])"), "");
	text = std::regex_replace(text, std::regex(R"(\\-)"), "-");
	text = std::regex_replace(text, std::regex(R"(\\e)"), "\\");
	return text;
}

bool mentions(const std::string &text, const std::string &word)
{
	// Whole words: "--tag" must not count as found inside "--tag-key".
	std::regex pattern("(^|[^-a-z0-9])" + std::regex_replace(word, std::regex(R"([.\[\]])"), R"(\$&)") +
			   "($|[^-a-z0-9])");
	return std::regex_search(text, pattern);
}

std::string version()
{
	std::string out;
	EXPECT_EQ(runStdout({envOr("VIRTSNAP_BIN"), "--version"}, &out), 0);
	return out.substr(0, out.find('\n')); // "virtsnap 0.1.0"
}

class ManPageTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		ASSERT_FALSE(envOr("VIRTSNAP_BIN").empty()) << "VIRTSNAP_BIN is not set (meson sets it)";
		ASSERT_FALSE(envOr("VIRTSNAPD_BIN").empty()) << "VIRTSNAPD_BIN is not set (meson sets it)";
		ASSERT_FALSE(envOr("VIRTSNAP_SOURCE_DIR").empty()) << "VIRTSNAP_SOURCE_DIR is not set";
	}
};

TEST_F(ManPageTest, VirtsnapPageHasEveryCommandAndOption)
{
	std::string page = manText("plugin/cli/virtsnap.1");
	ASSERT_FALSE(mentions(page, "--no-such-option")) << "the check must be able to fail";
	std::string out;
	ASSERT_EQ(runStdout({envOr("VIRTSNAP_BIN"), "--complete"}, &out), 0);
	auto commands = lines(out);
	ASSERT_GE(commands.size(), 15u);
	for (const std::string &command : commands) {
		EXPECT_TRUE(mentions(page, command)) << "virtsnap.1 does not document the command '" << command << "'";
		std::vector<std::string> argv = {envOr("VIRTSNAP_BIN"), "--complete"};
		std::istringstream words(command);
		for (std::string w; words >> w;)
			argv.push_back(w);
		ASSERT_EQ(runStdout(argv, &out), 0);
		for (const CompletedOption &o : parseOptionLines(out))
			EXPECT_TRUE(mentions(page, o.name))
				<< "virtsnap.1 does not document " << o.name << " (of " << command << ")";
	}
}

TEST_F(ManPageTest, VirtsnapdPageHasEveryOption)
{
	std::string page = manText("plugin/daemon/virtsnapd.8");
	std::string help;
	ASSERT_EQ(runStdout({envOr("VIRTSNAPD_BIN"), "--help"}, &help), 0);
	std::regex option("--[a-z][-a-z]*");
	int found = 0;
	for (auto it = std::sregex_iterator(help.begin(), help.end(), option); it != std::sregex_iterator(); ++it) {
		found++;
		EXPECT_TRUE(mentions(page, it->str())) << "virtsnapd.8 does not document " << it->str();
	}
	EXPECT_GE(found, 9) << "virtsnapd --help shows fewer options than it has";
}

// Every key of the shipped config file, in the section of its group.
TEST_F(ManPageTest, ConfigPageHasEveryKeyInItsGroup)
{
	std::string page = manText("plugin/core/virtsnap.conf.5");
	std::string example = readRequiredFile(sourcePath("examples/virtsnap.conf"));
	std::string group;
	int keys = 0;
	for (const std::string &line : lines(example)) {
		std::smatch m;
		if (std::regex_match(line, m, std::regex(R"(^\[([a-z0-9]+)\]$)"))) {
			group = m[1];
			continue;
		}
		if (!std::regex_match(line, m, std::regex(R"(^#([a-z-]+) = .*$)")))
			continue;
		keys++;
		std::string header = ".SH \"[" + group + "]\"";
		size_t begin = page.find(header);
		ASSERT_NE(begin, std::string::npos) << "virtsnap.conf.5 has no section " << header;
		size_t end = page.find("\n.SH", begin + 1);
		std::string section = page.substr(begin, end - begin);
		EXPECT_TRUE(mentions(section, m[1])) << "virtsnap.conf.5 does not document [" << group << "] " << m[1];
	}
	EXPECT_EQ(keys, 13);
}

TEST_F(ManPageTest, PagesCarryTheVersion)
{
	std::string v = version();
	ASSERT_EQ(v.rfind("virtsnap ", 0), 0u) << v;
	for (const char *page : {"plugin/cli/virtsnap.1", "plugin/daemon/virtsnapd.8", "plugin/core/virtsnap.conf.5"}) {
		std::string text = readRequiredFile(sourcePath(page));
		std::smatch th;
		ASSERT_TRUE(std::regex_search(text, th, std::regex(R"(\n\.TH [^\n]*)"))) << page;
		EXPECT_NE(th.str().find("\"" + v + "\""), std::string::npos) << page << ": " << th.str() << " is not " << v;
	}
}

// What lintian runs (and a narrower terminal): no groff warning at all.
TEST_F(ManPageTest, PagesRenderWithoutWarnings)
{
	REQUIRE_TOOL("man");
	for (const char *page : {"plugin/cli/virtsnap.1", "plugin/daemon/virtsnapd.8", "plugin/core/virtsnap.conf.5"}) {
		for (const char *width : {"80", "66"}) {
			for (const char *mode : {"-Tutf8 -Z", ""}) {
				std::string out;
				std::string cmd = std::string("LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=") + width +
						  " man --warnings -E UTF-8 -l " + mode + " \"$1\" 2>&1 >/dev/null";
				int status = runCommand({"sh", "-c", cmd, "sh", sourcePath(page)}, &out);
				EXPECT_EQ(status, 0) << page;
				EXPECT_EQ(out, "") << page << " at width " << width << ":\n" << out;
			}
		}
	}
}

// The unit as meson configures it, checked by systemd itself, with
// ExecStart pointed at the built daemon (verify wants it to exist).
TEST_F(ManPageTest, UnitPassesSystemdVerify)
{
	REQUIRE_TOOL("systemd-analyze");
	std::string unit = readRequiredFile(envOr("VIRTSNAPD_UNIT"));
	std::smatch exec;
	ASSERT_TRUE(std::regex_search(unit, exec, std::regex(R"(\nExecStart=(\S+) ([^\n]*))"))) << unit;
	EXPECT_EQ(exec[2].str(), "--foreground") << "systemd wants the daemon in the foreground";
	EXPECT_NE(unit.find("\nRuntimeDirectory=virtsnap\n"), std::string::npos);
	// The daemon accepts what the unit gives it.
	std::string out;
	EXPECT_EQ(runStdout({envOr("VIRTSNAPD_BIN"), exec[2].str(), "--help"}, &out), 0);

	TempDir dir("vs-unit");
	std::string copy = std::regex_replace(unit, std::regex(R"(\nExecStart=\S+)"),
					      "\nExecStart=" + envOr("VIRTSNAPD_BIN"));
	std::ofstream(dir.file("virtsnapd.service")) << copy;
	int status = runCommand({"systemd-analyze", "verify", "--man=no", dir.file("virtsnapd.service")}, &out);
	EXPECT_EQ(status, 0) << out;
	EXPECT_EQ(out, "") << "systemd-analyze verify warns:\n" << out;

	// The check itself sees a typo.
	std::ofstream(dir.file("typo.service")) << copy << "ProtectSystem=fulll\n";
	runCommand({"systemd-analyze", "verify", "--man=no", dir.file("typo.service")}, &out);
	EXPECT_NE(out, "") << "systemd-analyze verify should warn about a bad value";
}

} // namespace
} // namespace virtsnap::test
