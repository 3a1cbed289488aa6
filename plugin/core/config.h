// virtsnap's configuration file, /etc/virtsnap/virtsnap.conf: the defaults
// of virtsnap, virtsnapd and the libvirt hook in one place. It is a GLib
// key file (INI-like, read with GKeyFile); the commented example installed
// as the file is examples/virtsnap.conf.
//
// Precedence, highest first: command-line option > environment variable
// (VIRTSNAP_STORE, VIRTSNAP_KEY_FILE, VIRTSNAP_STATE_DIR, VIRTSNAP_SOCKET) >
// this file > built-in default. This module does the last three; each program lays its
// own options over the result.
//
// Tiny on purpose: it depends on GLib and error.h only (its own static
// library, config_dep), so a libvirt hook linking it starts in a few ms.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "error.h"

namespace virtsnap {

// An [account ID] section: which local users and groups act as the account
// (engine/accounts.h), and where its key file is.
struct AccountConfig {
	std::string accountId;             // 12 decimal digits
	std::filesystem::path keyFile;     // key-file
	std::vector<std::string> users;    // users = alice, bob
	std::vector<std::string> groups;   // groups = tenant-b
};

inline constexpr const char *kConfigPath = "/etc/virtsnap/virtsnap.conf";
inline constexpr const char *kConfigEnv = "VIRTSNAP_CONFIG";

// A store that copies go to from this host (copy-snapshot
// --destination-store, a lifecycle policy's CrossStoreCopyRules), with
// what opens it: a group "[store-target URL]" of the file. Its key is
// named here and nowhere else, so no caller ever hands the root daemon a
// key file or credentials for a store of the caller's choosing.
struct StoreTarget {
	std::string url;                           // as the group names it; a policy's TargetStore is spelt the same
	std::filesystem::path keyFile;             // key-file: the target store's master key (required)
	std::filesystem::path s3CredentialsFile;   // s3-credentials-file: for an s3:// target; none: the [s3] file
};
inline constexpr const char *kStoreTargetGroup = "store-target";

// Every key the file may hold, with its built-in default. A default-built
// Config is the defaults.
struct Config {
	std::string storePath = "/var/lib/virtsnap";                            // [store] path: a path or a URL
	std::filesystem::path keyFile = "/etc/virtsnap/store.key";              // [store] key-file
	std::filesystem::path stateDir;                                         // [store] state-dir; empty: see stateDirFor()
	std::chrono::seconds storeTimeout{30};                                  // [store] timeout (s)
	std::filesystem::path s3CredentialsFile;                                // [s3] credentials-file
	std::filesystem::path socket = "/run/virtsnap/virtsnapd.sock";          // [daemon] socket
	unsigned maxParallelJobs = 2;                                           // [daemon] max-parallel-jobs
	std::filesystem::path eventsLog = "/var/log/virtsnap/events.jsonl";     // [daemon] events-log
	std::filesystem::path eventsDir = "/etc/virtsnap/events.d";             // [daemon] events-dir
	std::chrono::milliseconds handlerTimeout{10'000};                       // [daemon] handler-timeout (s)
	std::string libvirtUri = "qemu:///system";                              // [libvirt] uri
	std::chrono::seconds hypervisorTimeout{30};                             // [hypervisor] timeout (s)
	std::vector<StoreTarget> storeTargets;                                  // [store-target URL] groups; none by default
	std::chrono::milliseconds luksIterTime{2000};                           // [restore] luks-iter-time (ms)
	// [account ID] sections, in file order. None: every user the daemon
	// lets in acts as the store's default account (as before accounts).
	std::vector<AccountConfig> accounts;

	// The file the values were read from; empty when there was none (all
	// defaults).
	std::filesystem::path loadedFrom;
};

// $VIRTSNAP_CONFIG when set and not empty, else /etc/virtsnap/virtsnap.conf.
std::filesystem::path defaultConfigPath();

// Reads `path` over the built-in defaults. A missing file gives the
// defaults. An unreadable or malformed file, an unknown group or key, a key
// given twice, a comment after a value, or a bad value fails with one line
// naming the file, the key and the problem:
// "/etc/virtsnap/virtsnap.conf: [daemon] max-parallel-jobs: '0' is not a
// whole number from 1 to 64" (InvalidParameterValue; IOError when the file
// cannot be read). Paths in the file must be absolute.
Result<Config> loadConfig(const std::filesystem::path &path);
// What loadConfig does once the file is read; `path` names it in errors.
Result<Config> parseConfig(const std::filesystem::path &path, const std::string &data);

// The [store-target URL] group whose URL is `url`, spelt the same; null
// when the file has none.
const StoreTarget *findStoreTarget(const std::vector<StoreTarget> &targets, const std::string &url);

// What virtsnap, virtsnapd and the hook start with: the file named by
// `configOption` (the --config value; empty when not given), else by
// $VIRTSNAP_CONFIG, else /etc/virtsnap/virtsnap.conf, read with loadConfig;
// then VIRTSNAP_STORE, VIRTSNAP_KEY_FILE, VIRTSNAP_STATE_DIR and
// VIRTSNAP_SOCKET (when set and not empty) override what the file says. A file named by --config or
// $VIRTSNAP_CONFIG must exist: a typo there would otherwise silently mean
// the defaults.
Result<Config> loadEffectiveConfig(const std::filesystem::path &configOption = {});

// Where this host keeps its state for a store (the catalog, job records):
// `configured` when given; for a store in a local directory the directory
// itself, as always; for a remote store /var/lib/virtsnap/state.
std::filesystem::path stateDirFor(const std::string &store, const std::filesystem::path &configured);
inline constexpr const char *kRemoteStateDir = "/var/lib/virtsnap/state";

// The rules of the daemon's numeric settings, shared by the file and by
// virtsnapd's options so both accept the same values. The error message is
// the problem alone ("'0' is not a whole number from 1 to 64"); the caller
// says where the value came from.
Result<unsigned> parseMaxParallelJobs(const std::string &text);
// Seconds, fractions allowed ("2.5"), more than 0 and at most 86400.
Result<std::chrono::milliseconds> parseHandlerTimeout(const std::string &text);
// Whole seconds from 1 to 3600: librados takes its timeouts in whole seconds,
// and so do libvirt's agent calls.
Result<std::chrono::seconds> parseTimeoutSeconds(const std::string &text);

} // namespace virtsnap
