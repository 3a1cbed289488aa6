// The bash completion (plugin/cli/virtsnap.bash-completion) against the
// virtsnap it completes: what "virtsnap --complete" says must be what
// --help says and what the parser accepts, and the script, run by bash as
// bash-completion would, must offer exactly that.
#include <algorithm>
#include <map>

#include "package_test_util.h"

namespace virtsnap::test {
namespace {

std::string bin()
{
	return envOr("VIRTSNAP_BIN");
}

std::string script()
{
	return sourcePath("plugin/cli/virtsnap.bash-completion");
}

// What the script offers for a command line whose last word is being
// completed: words = {"virtsnap", ..., current}.
std::set<std::string> offered(std::vector<std::string> words)
{
	words.insert(words.begin(), bin());
	std::vector<std::string> argv = {"bash", "-c",
					 "source \"$1\" || exit 99; shift\n"
					 "COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1))\n"
					 "COMP_LINE=\"$*\"; COMP_POINT=${#COMP_LINE}\n"
					 "_virtsnap || exit 98\n"
					 "for w in \"${COMPREPLY[@]}\"; do printf '%s\\n' \"$w\"; done",
					 "bash", script()};
	argv.insert(argv.end(), words.begin(), words.end());
	std::string out;
	int status = runStdout(argv, &out);
	EXPECT_EQ(status, 0) << "the completion function failed for a line of " << words.size() << " words";
	auto l = lines(out);
	return {l.begin(), l.end()};
}

std::vector<std::string> commands()
{
	std::string out;
	EXPECT_EQ(runStdout({bin(), "--complete"}, &out), 0);
	return lines(out);
}

std::vector<CompletedOption> optionsOf(const std::string &command)
{
	std::vector<std::string> argv = {bin(), "--complete"};
	std::istringstream words(command);
	for (std::string w; words >> w;)
		argv.push_back(w);
	std::string out;
	EXPECT_EQ(runStdout(argv, &out), 0) << "virtsnap --complete " << command;
	return parseOptionLines(out);
}

std::vector<std::string> split(const std::string &s)
{
	std::vector<std::string> out;
	std::istringstream in(s);
	for (std::string w; in >> w;)
		out.push_back(w);
	return out;
}

// --help's commands and, per command, the options it shows.
std::map<std::string, std::set<std::string>> helpCommands()
{
	std::string out;
	EXPECT_EQ(runStdout({bin(), "--help"}, &out), 0);
	std::map<std::string, std::set<std::string>> result;
	std::string current;
	bool inCommands = false;
	for (const std::string &line : lines(out)) {
		if (line == "commands:") {
			inCommands = true;
			continue;
		}
		if (!inCommands || line.rfind("  ", 0) != 0)
			continue;
		if (line[2] != ' ') {
			// "  name<padding> summary": the name ends where two blanks start.
			current = line.substr(2, line.find("  ", 2) - 2);
			result[current];
			continue;
		}
		for (const std::string &word : split(line))
			if (word.rfind("[--", 0) == 0)
				result[current].insert(word.substr(1, word.find_first_of(" ]") - 1));
	}
	return result;
}

class CompletionTest : public ::testing::Test
{
protected:
	void SetUp() override
	{
		ASSERT_FALSE(bin().empty()) << "VIRTSNAP_BIN is not set (meson sets it)";
		ASSERT_FALSE(envOr("VIRTSNAP_SOURCE_DIR").empty()) << "VIRTSNAP_SOURCE_DIR is not set";
		REQUIRE_TOOL("bash");
	}
};

TEST_F(CompletionTest, CompleteListsTheCommandsOfHelp)
{
	auto listed = commands();
	auto help = helpCommands();
	ASSERT_GE(listed.size(), 15u) << "too few commands: is --complete broken?";
	std::set<std::string> fromComplete(listed.begin(), listed.end()), fromHelp;
	for (const auto &[name, options] : help)
		fromHelp.insert(name);
	EXPECT_EQ(fromComplete, fromHelp);
	EXPECT_TRUE(fromComplete.count("catalog rebuild")) << "two-word commands are listed as typed";
	EXPECT_TRUE(fromComplete.count("wait snapshot-completed"));
}

TEST_F(CompletionTest, CompleteListsTheOptionsOfHelp)
{
	auto help = helpCommands();
	std::string out;
	ASSERT_EQ(runStdout({bin(), "--complete", "--global"}, &out), 0);
	std::set<std::string> globals;
	for (const CompletedOption &o : parseOptionLines(out))
		globals.insert(o.name);
	EXPECT_TRUE(globals.count("--store") && globals.count("--config") && globals.count("--output"));
	for (const std::string &command : commands()) {
		std::set<std::string> own;
		for (const CompletedOption &o : optionsOf(command))
			if (!globals.count(o.name))
				own.insert(o.name);
		EXPECT_EQ(own, help[command]) << "options of " << command;
	}
	EXPECT_NE(runStdout({bin(), "--complete", "no-such-command"}, &out), 0);
}

// Every completed option is one the parser takes: "--help" after it
// exits 0 when the line parses, 2 when it does not.
TEST_F(CompletionTest, EveryCompletedOptionIsAccepted)
{
	std::string out;
	ASSERT_EQ(runStdout({bin(), "create-snapshot", "--no-such-option", "--help"}, &out), 2)
		<< "the probe must be able to fail";
	for (const std::string &command : commands()) {
		for (const CompletedOption &o : optionsOf(command)) {
			if (o.name == "--help" || o.name == "--version")
				continue;
			std::vector<std::string> argv = {bin()};
			for (const std::string &w : split(command))
				argv.push_back(w);
			argv.push_back(o.name);
			if (o.takesValue)
				argv.push_back("x");
			argv.push_back("--help");
			EXPECT_EQ(runStdout(argv, &out), 0) << command << " " << o.name;
		}
	}
}

TEST_F(CompletionTest, ScriptOffersEveryCommand)
{
	std::set<std::string> firstWords;
	std::map<std::string, std::set<std::string>> secondWords;
	for (const std::string &command : commands()) {
		auto words = split(command);
		firstWords.insert(words[0]);
		if (words.size() == 2)
			secondWords[words[0]].insert(words[1]);
	}
	EXPECT_EQ(offered({""}), firstWords);
	EXPECT_EQ(offered({"create-snap"}), (std::set<std::string>{"create-snapshot", "create-snapshots"}));
	for (const auto &[first, seconds] : secondWords)
		EXPECT_EQ(offered({first, ""}), seconds) << "after " << first;
	// Global options and their values before the command are skipped.
	EXPECT_EQ(offered({"--store", "/srv/store", "--output", "table", ""}), firstWords);
}

TEST_F(CompletionTest, ScriptOffersEveryOptionOfEveryCommand)
{
	for (const std::string &command : commands()) {
		std::set<std::string> expected;
		for (const CompletedOption &o : optionsOf(command))
			expected.insert(o.name);
		std::vector<std::string> line = split(command);
		line.push_back("--");
		EXPECT_EQ(offered(line), expected) << "options of " << command;
		// After the command, an empty word offers the options too.
		line.back() = "";
		EXPECT_EQ(offered(line), expected) << "options of " << command;
	}
}

TEST_F(CompletionTest, ScriptDropsOptionsAlreadyGivenUnlessRepeatable)
{
	auto after = offered({"--store", "/srv/store", "create-snapshot", "--disk", "vda", "--tag", "a=b", "--"});
	EXPECT_FALSE(after.count("--disk")) << "--disk may be given once";
	EXPECT_FALSE(after.count("--store")) << "--store may be given once";
	EXPECT_TRUE(after.count("--tag")) << "--tag is repeatable";
	EXPECT_TRUE(after.count("--qmp-socket"));
	// A value that looks like a command is still a value.
	auto valueLikeCommand = offered({"--store", "gc", ""});
	EXPECT_TRUE(valueLikeCommand.count("create-snapshot")) << "'gc' was --store's value, not the command";
}

TEST_F(CompletionTest, ScriptCompletesValues)
{
	EXPECT_EQ(offered({"--output", ""}), (std::set<std::string>{"json", "table"}));
	EXPECT_EQ(offered({"describe-snapshots", "--output", "t"}), (std::set<std::string>{"table"}));
	// bash splits "--output=t" into "--output" "=" "t".
	EXPECT_EQ(offered({"--output", "=", "t"}), (std::set<std::string>{"table"}));
	EXPECT_EQ(offered({"--output", "="}), (std::set<std::string>{"json", "table"}));

	// Paths complete as files.
	TempDir dir("vs-completion");
	std::ofstream(dir.file("qmp-socket-of-vm1")) << "";
	auto files = offered({"create-snapshot", "--qmp-socket", dir.file("qmp-")});
	EXPECT_EQ(files, (std::set<std::string>{dir.file("qmp-socket-of-vm1")}));
	// Free text gets nothing, rather than file names.
	EXPECT_TRUE(offered({"create-snapshot", "--description", ""}).empty());
}

TEST_F(CompletionTest, ScriptWithoutAWorkingBinaryOffersNothing)
{
	std::string out;
	int status = runStdout({"bash", "-c",
				"source \"$1\"; COMP_WORDS=(/nonexistent/virtsnap ''); COMP_CWORD=1; _virtsnap; "
				"echo \"${#COMPREPLY[@]}\"",
				"bash", script()},
			       &out);
	EXPECT_EQ(status, 0);
	EXPECT_EQ(out, "0\n");
}

} // namespace
} // namespace virtsnap::test
