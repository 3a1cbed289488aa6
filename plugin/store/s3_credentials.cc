#include "s3_credentials.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/unique_fd.h"

namespace virtsnap::store::s3 {

namespace {

// A credentials file is two short lines; anything this big is something else.
constexpr size_t kMaxFileBytes = 64 << 10;

void wipe(std::string &s)
{
	if (!s.empty())
		::explicit_bzero(s.data(), s.size());
	s.clear();
}

std::string octalMode(mode_t mode)
{
	char buf[16];
	std::snprintf(buf, sizeof buf, "%04o", unsigned(mode & 07777));
	return buf;
}

std::string_view trim(std::string_view s)
{
	while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
		s.remove_prefix(1);
	while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
		s.remove_suffix(1);
	return s;
}

// The file's bytes, read from the descriptor whose mode was checked, so
// the file judged is the file read.
Result<std::string> readPrivateFile(const std::string &name)
{
	UniqueFd fd(::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
	if (!fd.isValid())
		return fail(errc::kKeyFile, "S3 credentials file " + name + ": " + std::strerror(errno));
	struct stat st;
	if (::fstat(fd.get(), &st) != 0)
		return fail(errc::kKeyFile, "S3 credentials file " + name + ": " + std::strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(errc::kKeyFile, "S3 credentials file " + name + " is not a regular file");
	if ((st.st_mode & 077) != 0)
		return fail(errc::kKeyFile, "S3 credentials file " + name + " has mode " + octalMode(st.st_mode) +
						    ", so others may read the secret; it must be 0600 (chmod 600 " +
						    name + ")");
	if (size_t(st.st_size) > kMaxFileBytes)
		return fail(errc::kKeyFile, "S3 credentials file " + name + " is too large to be one");
	std::string text(size_t(st.st_size) + 1, '\0');
	size_t got = 0;
	while (got < text.size()) {
		ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;
			wipe(text);
			return fail(errc::kKeyFile, "S3 credentials file " + name + ": " + std::strerror(err));
		}
		if (n == 0)
			break;
		got += size_t(n);
	}
	text.resize(got);
	return text;
}

// Errors name the line by its number only: a line may hold the secret.
Result<void> parseLines(const std::string &name, std::string_view text, Credentials &out)
{
	int number = 0;
	for (size_t start = 0; start < text.size();) {
		size_t end = text.find('\n', start);
		std::string_view line = trim(text.substr(start, end == std::string_view::npos ? end : end - start));
		start = end == std::string_view::npos ? text.size() : end + 1;
		number++;
		if (line.empty() || line.front() == '#')
			continue;
		size_t eq = line.find('=');
		std::string_view key = eq == std::string_view::npos ? line : trim(line.substr(0, eq));
		std::string *field = key == "access-key-id"       ? &out.accessKeyId
				     : key == "secret-access-key" ? &out.secretAccessKey
								  : nullptr;
		if (eq == std::string_view::npos || !field)
			return fail(errc::kKeyFile, "S3 credentials file " + name + ", line " + std::to_string(number) +
							    ": not access-key-id = ... or secret-access-key = ...");
		wipe(*field);
		field->assign(trim(line.substr(eq + 1)));
	}
	if (out.accessKeyId.empty() || out.secretAccessKey.empty())
		return fail(errc::kKeyFile, "S3 credentials file " + name +
						    " needs both 'access-key-id = ...' and 'secret-access-key = ...'");
	return {};
}

} // namespace

Credentials::~Credentials()
{
	wipe(secretAccessKey);
}

Result<Credentials> loadCredentials(const BackendSettings &settings)
{
	Credentials out;
	if (!settings.s3CredentialsFile.empty()) {
		VS_ASSIGN(std::string text, readPrivateFile(settings.s3CredentialsFile));
		auto parsed = parseLines(settings.s3CredentialsFile, text, out);
		wipe(text);
		VS_TRY(parsed);
		return out;
	}
	const char *id = std::getenv("AWS_ACCESS_KEY_ID");
	const char *secret = std::getenv("AWS_SECRET_ACCESS_KEY");
	if (!id || !*id || !secret || !*secret)
		return fail(errc::kMissingParameter, "no S3 credentials: name a 0600 credentials file, or set "
						     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	out.accessKeyId = id;
	out.secretAccessKey = secret;
	return out;
}

} // namespace virtsnap::store::s3
