// The key pair an S3 backend signs with: from a 0600 file, or from
// $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY. The secret goes to libcurl
// and nowhere else: not into messages, logs, argv or a child's environment.
#pragma once

#include <string>

#include "backend.h"

namespace virtsnap::store::s3 {

struct Credentials {
	std::string accessKeyId;
	std::string secretAccessKey;

	Credentials() = default;
	Credentials(const Credentials &) = default;
	Credentials(Credentials &&) = default;
	Credentials &operator=(const Credentials &) = default;
	Credentials &operator=(Credentials &&) = default;
	~Credentials(); // wipes the secret
};

// BackendSettings::s3CredentialsFile when set, else the environment. The
// file holds `access-key-id = AK` and `secret-access-key = SK` lines (blank
// lines and # comments allowed) and must not be readable by group or
// others: KeyFileError naming the file, never quoting a line of it.
Result<Credentials> loadCredentials(const BackendSettings &settings);

} // namespace virtsnap::store::s3
