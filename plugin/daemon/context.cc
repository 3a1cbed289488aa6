#include "context.h"

namespace virtsnap::daemon {

StoreLocation storeLocationFrom(const Arguments &args, const Config &config)
{
	StoreLocation location;
	location.url = args.get("store", config.storePath);
	location.keyFile = args.get("key-file", config.keyFile.string());
	location.stateDir = stateDirFor(location.url, args.get("state-dir", config.stateDir.string()));
	location.s3CredentialsFile = config.s3CredentialsFile;
	location.timeout = config.storeTimeout;
	return location;
}

ServiceOptions serviceOptionsFrom(const Config &config)
{
	ServiceOptions options;
	options.libvirtUri = config.libvirtUri;
	options.hypervisorTimeout = config.hypervisorTimeout;
	options.accounts = config.accounts;
	options.storeTargets = config.storeTargets;
	options.luksIterTime = config.luksIterTime;
	return options;
}

} // namespace virtsnap::daemon
