#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <vector>

namespace virtsnap {

namespace {

namespace fs = std::filesystem;

// Larger than any sensible config: refuse it rather than read a mistaken
// path (a disk image, a device) into memory.
constexpr size_t kMaxConfigBytes = 1 << 20;

template<typename T, void (*Free)(T *)>
struct GFree {
	void operator()(T *p) const { Free(p); }
};
using KeyFilePtr = std::unique_ptr<GKeyFile, GFree<GKeyFile, g_key_file_free>>;
using ErrorPtr = std::unique_ptr<GError, GFree<GError, g_error_free>>;
using StrvPtr = std::unique_ptr<gchar *, GFree<gchar *, g_strfreev>>;

void freeString(gchar *s) { g_free(s); }
using StringPtr = std::unique_ptr<gchar, GFree<gchar, freeString>>;

// One key: where it lives, and how its text lands in a Config. The table is
// the whole list of what the file may say.
struct KeySpec {
	const char *group;
	const char *name;
	std::function<Result<void>(const std::string &value, Config &config)> apply;
};

Result<void> absolutePath(const std::string &value, fs::path &out)
{
	if (value.empty() || value[0] != '/')
		return fail(errc::kInvalidParameterValue, "'" + value + "' is not an absolute path");
	out = value;
	return {};
}

// A directory, or a store URL; the URL's own rules are checked when the
// store is opened (store/backend_url.h), this only keeps typos out.
Result<void> storeLocation(const std::string &value, std::string &out)
{
	for (const char *scheme : {"file://", "rados://", "s3://"})
		if (value.rfind(scheme, 0) == 0) {
			out = value;
			return {};
		}
	if (value.find("://") != std::string::npos)
		return fail(errc::kInvalidParameterValue,
			    "'" + value + "' has an unknown scheme (a path, file://, rados:// or s3://)");
	fs::path path;
	VS_TRY(absolutePath(value, path));
	out = value;
	return {};
}

const std::vector<KeySpec> &keySpecs()
{
	static const std::vector<KeySpec> specs = {
		{"store", "path", [](const std::string &v, Config &c) { return storeLocation(v, c.storePath); }},
		{"store", "key-file", [](const std::string &v, Config &c) { return absolutePath(v, c.keyFile); }},
		{"store", "state-dir", [](const std::string &v, Config &c) { return absolutePath(v, c.stateDir); }},
		{"store", "timeout",
		 [](const std::string &v, Config &c) -> Result<void> {
			 VS_ASSIGN(c.storeTimeout, parseTimeoutSeconds(v));
			 return {};
		 }},
		{"s3", "credentials-file",
		 [](const std::string &v, Config &c) { return absolutePath(v, c.s3CredentialsFile); }},
		{"daemon", "socket", [](const std::string &v, Config &c) { return absolutePath(v, c.socket); }},
		{"daemon", "max-parallel-jobs",
		 [](const std::string &v, Config &c) -> Result<void> {
			 VS_ASSIGN(c.maxParallelJobs, parseMaxParallelJobs(v));
			 return {};
		 }},
		{"daemon", "events-log", [](const std::string &v, Config &c) { return absolutePath(v, c.eventsLog); }},
		{"daemon", "events-dir", [](const std::string &v, Config &c) { return absolutePath(v, c.eventsDir); }},
		{"daemon", "handler-timeout",
		 [](const std::string &v, Config &c) -> Result<void> {
			 VS_ASSIGN(c.handlerTimeout, parseHandlerTimeout(v));
			 return {};
		 }},
		{"libvirt", "uri",
		 [](const std::string &v, Config &c) -> Result<void> {
			 for (unsigned char ch : v)
				 if (ch <= ' ' || ch == 0x7f)
					 return fail(errc::kInvalidParameterValue,
						     "'" + v + "' is not a libvirt URI (it has blanks or control characters)");
			 c.libvirtUri = v;
			 return {};
		 }},
		{"hypervisor", "timeout",
		 [](const std::string &v, Config &c) -> Result<void> {
			 VS_ASSIGN(c.hypervisorTimeout, parseTimeoutSeconds(v));
			 return {};
		 }},
		// How long a new LUKS image's key derivation takes (QEMU's
		// encrypt.iter-time): each open of the image costs about as much.
		{"restore", "luks-iter-time",
		 [](const std::string &v, Config &c) -> Result<void> {
			 char *end = nullptr;
			 errno = 0;
			 unsigned long ms = std::strtoul(v.c_str(), &end, 10);
			 if (v.empty() || !std::isdigit(static_cast<unsigned char>(v[0])) || *end || errno || ms < 1 ||
			     ms > 60000)
				 return fail(errc::kInvalidParameterValue,
					     "'" + v + "' is not a whole number of milliseconds from 1 to 60000");
			 c.luksIterTime = std::chrono::milliseconds(ms);
			 return {};
		 }},
	};
	return specs;
}

std::string knownGroups()
{
	std::string out;
	for (const KeySpec &k : keySpecs())
		if (out.find(std::string("[") + k.group + "]") == std::string::npos)
			out += std::string(out.empty() ? "" : ", ") + "[" + k.group + "]";
	return out;
}

std::string knownKeys(const std::string &group)
{
	std::string out;
	for (const KeySpec &k : keySpecs())
		if (group == k.group)
			out += std::string(out.empty() ? "" : ", ") + k.name;
	return out;
}

// The file's bytes, or nothing with *missing set when it does not exist.
// Opened non-blocking, so a FIFO named by mistake cannot hang the caller.
Result<std::string> readConfigFile(const fs::path &path, bool *missing)
{
	*missing = false;
	int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT) {
			*missing = true;
			return std::string();
		}
		return fail(errc::kIo, path.string() + ": cannot read: " + std::strerror(errno));
	}
	struct Closer {
		int fd;
		~Closer() { ::close(fd); }
	} closer{fd};
	struct stat st;
	if (::fstat(fd, &st) != 0)
		return fail(errc::kIo, path.string() + ": cannot read: " + std::strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(errc::kIo, path.string() + ": cannot read: not a regular file");
	std::string data;
	char buf[8192];
	for (;;) {
		ssize_t n = ::read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(errc::kIo, path.string() + ": cannot read: " + std::strerror(errno));
		if (n == 0)
			break;
		data.append(buf, size_t(n));
		if (data.size() > kMaxConfigBytes)
			return fail(errc::kInvalidParameterValue,
				    path.string() + ": larger than " + std::to_string(kMaxConfigBytes) +
					    " bytes: is this the config file?");
	}
	return data;
}

std::string trimmed(std::string s)
{
	size_t begin = s.find_first_not_of(" \t");
	size_t end = s.find_last_not_of(" \t");
	return begin == std::string::npos ? "" : s.substr(begin, end - begin + 1);
}

// What GKeyFile lets pass without a word: a key given twice (the last one
// wins) and localised keys like path[de] (ignored by plain lookups). Both
// are typos here; this scan runs on text GKeyFile has already accepted.
Result<void> checkKeyLines(const std::string &where, const std::string &data)
{
	std::map<std::string, int> seenAt;
	std::string group;
	std::istringstream lines(data);
	std::string line;
	for (int number = 1; std::getline(lines, line); number++) {
		line = trimmed(line);
		if (line.empty() || line[0] == '#')
			continue;
		if (line[0] == '[') {
			group = line.substr(1, line.find(']') - 1);
			continue;
		}
		std::string key = trimmed(line.substr(0, line.find('=')));
		std::string name = "[" + group + "] " + key;
		if (key.find('[') != std::string::npos)
			return fail(errc::kInvalidParameterValue,
				    where + "[" + group + "] unknown key '" + key + "' (line " + std::to_string(number) +
					    "; localised keys mean nothing here)");
		auto [it, fresh] = seenAt.emplace(name, number);
		if (!fresh)
			return fail(errc::kInvalidParameterValue,
				    where + name + ": given twice (lines " + std::to_string(it->second) + " and " +
					    std::to_string(number) + ")");
	}
	return {};
}

std::string fromEnvironment(const char *name)
{
	const char *v = std::getenv(name);
	return v ? v : "";
}

// "alice, bob" or "alice;bob": names, each once.
std::vector<std::string> nameList(const std::string &text)
{
	std::vector<std::string> out;
	std::string name;
	for (size_t i = 0; i <= text.size(); i++) {
		char c = i < text.size() ? text[i] : ',';
		if (c == ',' || c == ';' || c == ' ' || c == '\t') {
			if (!name.empty() && std::find(out.begin(), out.end(), name) == out.end())
				out.push_back(name);
			name.clear();
		} else {
			name += c;
		}
	}
	return out;
}

bool isAccountIdText(const std::string &id)
{
	return id.size() == 12 && id.find_first_not_of("0123456789") == std::string::npos;
}

// One [account ID] section: key-file (required), users, groups.
Result<AccountConfig> parseAccountGroup(GKeyFile *keyFile, const std::string &where, const std::string &group)
{
	AccountConfig account;
	account.accountId = group.substr(std::string("account ").size());
	if (!isAccountIdText(account.accountId))
		return fail(errc::kInvalidParameterValue,
			    where + "[" + group + "]: '" + account.accountId + "' is not an account id (12 decimal digits)");
	gsize keyCount = 0;
	StrvPtr keys(g_key_file_get_keys(keyFile, group.c_str(), &keyCount, nullptr));
	for (gsize k = 0; k < keyCount; k++) {
		const std::string name = keys.get()[k];
		StringPtr value(g_key_file_get_string(keyFile, group.c_str(), name.c_str(), nullptr));
		std::string text = value ? trimmed(value.get()) : "";
		const std::string what = where + "[" + group + "] " + name + ": ";
		if (name == "key-file") {
			if (auto r = absolutePath(text, account.keyFile); !r)
				return fail(r.error().code, what + r.error().message);
		} else if (name == "users") {
			account.users = nameList(text);
		} else if (name == "groups") {
			account.groups = nameList(text);
		} else {
			return fail(errc::kInvalidParameterValue,
				    where + "[" + group + "] unknown key '" + name + "' (known: key-file, users, groups)");
		}
	}
	if (account.keyFile.empty())
		return fail(errc::kInvalidParameterValue, where + "[" + group + "]: key-file is missing");
	return account;
}

} // namespace

namespace {

// One value as the file means it: blanks after it dropped, no comment
// after it, the key file's escapes undone, not empty. `what` names the
// file, group and key in errors.
Result<std::string> valueOf(GKeyFile *keyFile, const std::string &group, const std::string &name,
			    const std::string &what)
{
	// Blanks after a value are invisible in an editor, never meant:
	// drop them (GKeyFile keeps them). A space that is meant is \s.
	StringPtr raw(g_key_file_get_value(keyFile, group.c_str(), name.c_str(), nullptr));
	std::string text = raw ? raw.get() : "";
	text.erase(text.find_last_not_of(" \t") + 1);
	// GKeyFile has no comments after values: "path = /x # old" would
	// be a path ending in " # old". A literal one is written \s#.
	if (text.find(" #") != std::string::npos || text.find("\t#") != std::string::npos)
		return fail(errc::kInvalidParameterValue,
			    what + "'" + text + "' has a comment after the value; comments go on lines of their own");
	g_key_file_set_value(keyFile, group.c_str(), name.c_str(), text.c_str());
	// get_string undoes the key file's escapes (\s, \t, \\, ...). It
	// may return a value and an error at once: the error decides.
	GError *rawError = nullptr;
	StringPtr value(g_key_file_get_string(keyFile, group.c_str(), name.c_str(), &rawError));
	if (rawError || !value) {
		ErrorPtr error(rawError);
		return fail(errc::kInvalidParameterValue, what + (error ? error->message : "cannot be read"));
	}
	if (*value == '\0')
		return fail(errc::kInvalidParameterValue, what + "empty value (remove the line to get the default)");
	return std::string(value.get());
}

// The URL of a "[store-target URL]" group; nullopt for any other group.
std::optional<std::string> storeTargetUrl(const std::string &group)
{
	std::string prefix = std::string(kStoreTargetGroup) + " ";
	if (group != kStoreTargetGroup && group.rfind(prefix, 0) != 0)
		return std::nullopt;
	return group.size() > prefix.size() ? trimmed(group.substr(prefix.size())) : "";
}

// A [store-target URL] group: its URL as [store] path takes one, and
// key-file (required) and s3-credentials-file, absolute paths.
Result<StoreTarget> parseStoreTarget(GKeyFile *keyFile, const std::string &group, const std::string &url,
				     const std::string &where)
{
	StoreTarget target;
	if (auto location = storeLocation(url, target.url); !location)
		return fail(location.error().code, where + "[" + group + "]: the store " + location.error().message);
	gsize keyCount = 0;
	StrvPtr keys(g_key_file_get_keys(keyFile, group.c_str(), &keyCount, nullptr));
	for (gsize k = 0; k < keyCount; k++) {
		const std::string name = keys.get()[k];
		const std::string what = where + "[" + group + "] " + name + ": ";
		if (name != "key-file" && name != "s3-credentials-file")
			return fail(errc::kInvalidParameterValue, where + "[" + group + "] unknown key '" + name +
									  "' (known: key-file, s3-credentials-file)");
		VS_ASSIGN(std::string value, valueOf(keyFile, group, name, what));
		auto applied = absolutePath(value, name == "key-file" ? target.keyFile : target.s3CredentialsFile);
		if (!applied)
			return fail(applied.error().code, what + applied.error().message);
	}
	if (target.keyFile.empty())
		return fail(errc::kInvalidParameterValue,
			    where + "[" + group + "]: key-file is required (the target store's master key)");
	return target;
}

} // namespace

Result<Config> parseConfig(const fs::path &path, const std::string &data)
{
	const std::string where = path.string() + ": ";
	KeyFilePtr keyFile(g_key_file_new());
	GError *rawError = nullptr;
	if (!g_key_file_load_from_data(keyFile.get(), data.data(), data.size(), G_KEY_FILE_NONE, &rawError)) {
		ErrorPtr error(rawError);
		return fail(errc::kInvalidParameterValue, where + "not a valid key file: " + error->message);
	}
	VS_TRY(checkKeyLines(where, data));

	Config config;
	config.loadedFrom = path;
	gsize groupCount = 0;
	StrvPtr groups(g_key_file_get_groups(keyFile.get(), &groupCount));
	for (gsize g = 0; g < groupCount; g++) {
		const std::string group = groups.get()[g];
		if (group.rfind("account ", 0) == 0) {
			VS_ASSIGN(AccountConfig account, parseAccountGroup(keyFile.get(), where, group));
			config.accounts.push_back(std::move(account));
			continue;
		}
		if (auto url = storeTargetUrl(group)) {
			VS_ASSIGN(StoreTarget target, parseStoreTarget(keyFile.get(), group, *url, where));
			if (findStoreTarget(config.storeTargets, target.url))
				return fail(errc::kInvalidParameterValue, where + "[" + group + "]: given twice");
			config.storeTargets.push_back(std::move(target));
			continue;
		}
		if (knownKeys(group).empty())
			return fail(errc::kInvalidParameterValue,
				    where + "unknown group [" + group + "] (known: " + knownGroups() + ", [" +
					    kStoreTargetGroup + " URL], [account ID])");
		gsize keyCount = 0;
		StrvPtr keys(g_key_file_get_keys(keyFile.get(), group.c_str(), &keyCount, nullptr));
		for (gsize k = 0; k < keyCount; k++) {
			const std::string name = keys.get()[k];
			const std::string what = where + "[" + group + "] " + name + ": ";
			const KeySpec *spec = nullptr;
			for (const KeySpec &s : keySpecs())
				if (group == s.group && name == s.name)
					spec = &s;
			if (!spec)
				return fail(errc::kInvalidParameterValue,
					    where + "[" + group + "] unknown key '" + name +
						    "' (known: " + knownKeys(group) + ")");
			VS_ASSIGN(std::string value, valueOf(keyFile.get(), group, name, what));
			if (auto applied = spec->apply(value, config); !applied)
				return fail(applied.error().code, what + applied.error().message);
		}
	}
	return config;
}

const StoreTarget *findStoreTarget(const std::vector<StoreTarget> &targets, const std::string &url)
{
	for (const StoreTarget &t : targets)
		if (t.url == url)
			return &t;
	return nullptr;
}

std::filesystem::path defaultConfigPath()
{
	std::string fromEnv = fromEnvironment(kConfigEnv);
	return fromEnv.empty() ? fs::path(kConfigPath) : fs::path(fromEnv);
}

Result<Config> loadConfig(const std::filesystem::path &path)
{
	bool missing = false;
	VS_ASSIGN(const std::string data, readConfigFile(path, &missing));
	if (missing)
		return Config{};
	return parseConfig(path, data);
}

Result<Config> loadEffectiveConfig(const std::filesystem::path &configOption)
{
	fs::path path = configOption;
	std::string namedBy = "--config";
	if (path.empty() && !fromEnvironment(kConfigEnv).empty()) {
		path = fromEnvironment(kConfigEnv);
		namedBy = std::string("$") + kConfigEnv;
	}
	Result<Config> config;
	if (path.empty()) {
		config = loadConfig(kConfigPath);
	} else {
		bool missing = false;
		VS_ASSIGN(const std::string data, readConfigFile(path, &missing));
		if (missing)
			return fail(errc::kInvalidParameterValue,
				    path.string() + ": no such config file (named by " + namedBy + ")");
		config = parseConfig(path, data);
	}
	if (!config)
		return config;
	if (std::string v = fromEnvironment("VIRTSNAP_STORE"); !v.empty())
		config->storePath = v;
	if (std::string v = fromEnvironment("VIRTSNAP_KEY_FILE"); !v.empty())
		config->keyFile = v;
	if (std::string v = fromEnvironment("VIRTSNAP_STATE_DIR"); !v.empty())
		config->stateDir = v;
	if (std::string v = fromEnvironment("VIRTSNAP_SOCKET"); !v.empty())
		config->socket = v;
	return config;
}

fs::path stateDirFor(const std::string &store, const fs::path &configured)
{
	if (!configured.empty())
		return configured;
	bool remote = store.find("://") != std::string::npos && store.rfind("file://", 0) != 0;
	if (remote)
		return kRemoteStateDir;
	return store.rfind("file://", 0) == 0 ? fs::path(store.substr(7)) : fs::path(store);
}

Result<unsigned> parseMaxParallelJobs(const std::string &text)
{
	unsigned n = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
	if (ec != std::errc() || end != text.data() + text.size() || text.empty() || n < 1 || n > 64)
		return fail(errc::kInvalidParameterValue, "'" + text + "' is not a whole number from 1 to 64");
	return n;
}

Result<std::chrono::seconds> parseTimeoutSeconds(const std::string &text)
{
	unsigned n = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
	if (ec != std::errc() || end != text.data() + text.size() || text.empty() || n < 1 || n > 3600)
		return fail(errc::kInvalidParameterValue, "'" + text + "' is not a whole number of seconds from 1 to 3600");
	return std::chrono::seconds(n);
}

Result<std::chrono::milliseconds> parseHandlerTimeout(const std::string &text)
{
	double seconds = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
	if (ec != std::errc() || end != text.data() + text.size() || text.empty() || !std::isfinite(seconds) ||
	    !(seconds > 0) || seconds > 86400)
		return fail(errc::kInvalidParameterValue,
			    "'" + text + "' is not a number of seconds more than 0 and at most 86400");
	// A positive timeout never rounds down to "no time at all".
	return std::chrono::milliseconds(std::max<int64_t>(1, std::llround(seconds * 1000)));
}

} // namespace virtsnap
