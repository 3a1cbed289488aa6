#include "s3_http.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "crypto/crypto.h"

namespace virtsnap::store::s3 {

namespace {

using Clock = std::chrono::steady_clock;

// Retries: five attempts, 200 ms doubling with jitter, so at most about
// three seconds of waiting, and never past the timeout.
constexpr int kMaxAttempts = 5;
constexpr std::chrono::milliseconds kFirstBackoff{200};
// A request may take the timeout plus its payload at this rate: a 32 MiB
// pack on a slow link is not cut off, a stalled endpoint still fails.
constexpr uint64_t kSlowestBytesPerSecond = 256 << 10;
constexpr size_t kNoContinueBelow = 64 << 10;

void initOnce()
{
	static std::once_flag once;
	std::call_once(once, [] {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		initXml();
	});
}

struct CurlCleanup {
	void operator()(CURL *curl) const { curl_easy_cleanup(curl); }
};
struct SlistCleanup {
	void operator()(curl_slist *list) const { curl_slist_free_all(list); }
};

// One easy handle per thread, kept so connections are reused. A child
// forked from a thread that had one must not touch it (its sockets are the
// parent's too): it leaks it and starts its own.
CURL *threadHandle()
{
	struct Held {
		std::unique_ptr<CURL, CurlCleanup> curl;
		pid_t pid = 0;
		~Held()
		{
			if (pid != ::getpid())
				(void)curl.release(); // the parent's to close
		}
	};
	thread_local Held held;
	if (held.curl && held.pid != ::getpid())
		(void)held.curl.release(); // as above
	if (!held.curl) {
		held.curl.reset(curl_easy_init());
		held.pid = ::getpid();
	} else {
		curl_easy_reset(held.curl.get());
	}
	return held.curl.get();
}

// SigV4's URI encoding: unreserved characters as they are, '/' kept in
// keys, everything else %XX in upper case.
std::string encode(const std::string &s, bool keepSlash)
{
	static const char *hex = "0123456789ABCDEF";
	std::string out;
	for (unsigned char c : s) {
		if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keepSlash && c == '/')) {
			out += char(c);
		} else {
			out += '%';
			out += hex[c >> 4];
			out += hex[c & 15];
		}
	}
	return out;
}

std::string canonicalQuery(std::vector<std::pair<std::string, std::string>> query)
{
	std::vector<std::pair<std::string, std::string>> encoded;
	for (auto &[name, value] : query)
		encoded.emplace_back(encode(name, false), encode(value, false));
	std::sort(encoded.begin(), encoded.end());
	std::string out;
	for (auto &[name, value] : encoded)
		out += (out.empty() ? "" : "&") + name + "=" + value;
	return out;
}

std::chrono::milliseconds backoff(int attempt)
{
	thread_local std::mt19937 random{std::random_device{}()};
	auto full = kFirstBackoff * (1 << (attempt - 1));
	std::uniform_int_distribution<long> pick(full.count() / 2, full.count());
	return std::chrono::milliseconds(pick(random));
}

// What one attempt carries through libcurl's callbacks.
struct Transfer {
	const Request *request = nullptr;
	Response *response = nullptr;
	size_t uploaded = 0;
	bool overflow = false;
	bool timedOut = false;
	Clock::time_point started;
	std::chrono::seconds timeout{0};
};

size_t readBody(char *buffer, size_t size, size_t count, void *user)
{
	auto *t = static_cast<Transfer *>(user);
	size_t n = std::min(size * count, t->request->body.size() - t->uploaded);
	std::memcpy(buffer, t->request->body.data() + t->uploaded, n);
	t->uploaded += n;
	return n;
}

// libcurl rewinds the upload when it sends the request again on a fresh
// connection (a kept-alive one the server had closed).
int seekBody(void *user, curl_off_t offset, int origin)
{
	auto *t = static_cast<Transfer *>(user);
	if (origin != SEEK_SET || offset < 0 || size_t(offset) > t->request->body.size())
		return CURL_SEEKFUNC_FAIL;
	t->uploaded = size_t(offset);
	return CURL_SEEKFUNC_OK;
}

size_t writeBody(char *data, size_t size, size_t count, void *user)
{
	auto *t = static_cast<Transfer *>(user);
	size_t n = size * count;
	Response &r = *t->response;
	if (t->request->into && r.status / 100 == 2) {
		std::span<uint8_t> into = *t->request->into;
		if (n > into.size() - r.received) {
			t->overflow = true;
			return 0;
		}
		std::memcpy(into.data() + r.received, data, n);
		r.received += n;
		return n;
	}
	if (r.body.empty() && r.contentLength && *r.contentLength < (uint64_t(1) << 32))
		r.body.reserve(size_t(*r.contentLength));
	r.body.insert(r.body.end(), (const uint8_t *)data, (const uint8_t *)data + n);
	return n;
}

size_t onHeader(char *data, size_t size, size_t count, void *user)
{
	auto *t = static_cast<Transfer *>(user);
	std::string line(data, size * count);
	while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
		line.pop_back();
	Response &r = *t->response;
	if (line.rfind("HTTP/", 0) == 0) {
		// A new status line (after "100 Continue"): what came before is void.
		size_t space = line.find(' ');
		r.status = space == std::string::npos ? 0 : std::strtol(line.c_str() + space + 1, nullptr, 10);
		r.contentLength.reset();
		return size * count;
	}
	size_t colon = line.find(':');
	if (colon == std::string::npos)
		return size * count;
	std::string name = line.substr(0, colon);
	std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
	size_t start = line.find_first_not_of(" \t", colon + 1);
	std::string value = start == std::string::npos ? "" : line.substr(start);
	if (name == "date")
		r.date = value;
	else if (name == "last-modified")
		r.lastModified = value;
	else if (name == "content-range")
		r.contentRange = value;
	else if (name == "x-amz-version-id")
		r.versionId = value;
	else if (name == "content-length")
		r.contentLength = std::strtoull(value.c_str(), nullptr, 10);
	return size * count;
}

// The whole-request deadline: the timeout, plus time for the payload either
// way once its size is known.
int onProgress(void *user, curl_off_t downTotal, curl_off_t, curl_off_t upTotal, curl_off_t)
{
	auto *t = static_cast<Transfer *>(user);
	uint64_t bytes = uint64_t(std::max({downTotal, upTotal, curl_off_t(0)}));
	if (t->request->into)
		bytes = std::max<uint64_t>(bytes, t->request->into->size());
	auto allowed = t->timeout + std::chrono::seconds(bytes / kSlowestBytesPerSecond);
	if (Clock::now() - t->started > allowed) {
		t->timedOut = true;
		return 1;
	}
	return 0;
}

// Connection failures and broken transfers; a timeout is not retried, the
// time for it is spent.
bool retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

// Whether the server may have acted on a request that failed so.
bool mayHaveReachedServer(CURLcode rc, long status)
{
	if (rc == CURLE_OK)
		return status / 100 == 5 && status != 503;
	return rc != CURLE_COULDNT_RESOLVE_HOST && rc != CURLE_COULDNT_CONNECT && rc != CURLE_SSL_CONNECT_ERROR;
}

// "3 attempts in 1.2 s"
std::string tally(int attempts, Clock::time_point began)
{
	char took[32];
	std::snprintf(took, sizeof took, "%.1f", std::chrono::duration<double>(Clock::now() - began).count());
	return std::to_string(attempts) + (attempts == 1 ? " attempt in " : " attempts in ") + took + " s";
}

} // namespace

std::optional<std::chrono::system_clock::time_point> parseHttpDate(const std::string &text)
{
	time_t when = curl_getdate(text.c_str(), nullptr);
	if (when == time_t(-1))
		return std::nullopt;
	return std::chrono::system_clock::from_time_t(when);
}

Client::Client(StoreUrl url, Credentials credentials, std::chrono::seconds timeout)
	: url_(std::move(url)), credentials_(std::move(credentials)), sigv4_("aws:amz:" + url_.region + ":s3"),
	  timeout_(timeout)
{
	initOnce();
}

std::string Client::urlFor(const Request &request) const
{
	std::string key = encode(request.key, true);
	std::string out;
	if (url_.virtualHosted) {
		size_t hostAt = url_.endpoint.find("://") + 3;
		out = url_.endpoint.substr(0, hostAt) + url_.bucket + "." + url_.endpoint.substr(hostAt) + "/" + key;
	} else {
		out = url_.endpoint + "/" + url_.bucket + (key.empty() ? "" : "/" + key);
	}
	if (!request.query.empty())
		out += "?" + canonicalQuery(request.query);
	return out;
}

namespace {

// Sets up `curl` for one attempt of `t`'s request; `headers` must outlive it.
void configure(CURL *curl, Transfer &t, const std::string &url, curl_slist *headers, char *errorText)
{
	const Request &request = *t.request;
	curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	// What is signed is what is sent: libcurl must not tidy the path.
	curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
	// Threads: no signals for DNS timeouts.
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, long(std::chrono::milliseconds(t.timeout).count()));
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errorText);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, onHeader);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, writeBody);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, onProgress);
	curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	if (request.method == "HEAD") {
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	} else if (request.method == "PUT") {
		curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.size()));
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, readBody);
		curl_easy_setopt(curl, CURLOPT_READDATA, &t);
		curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, seekBody);
		curl_easy_setopt(curl, CURLOPT_SEEKDATA, &t);
		// curl asks "Expect: 100-continue" before any body and waits a
		// second for it; radosgw 16 sends none on a retention, so small
		// bodies, where refusing early saves nothing, go without waiting.
		if (request.body.size() < kNoContinueBelow)
			curl_easy_setopt(curl, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
	} else if (request.method != "GET") {
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
	}
}

} // namespace

Client::Outcome Client::attempt(const Request &request, const std::string &url, curl_slist *headers,
				 Response &response) const
{
	CURL *curl = threadHandle();
	if (!curl || !headers)
		return {int(CURLE_OUT_OF_MEMORY), false, false, "libcurl could not set up a request"};
	Transfer t{&request, &response, 0, false, false, Clock::now(), timeout_};
	char errorText[CURL_ERROR_SIZE] = "";
	configure(curl, t, url, headers, errorText);
	curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4_.c_str());
	curl_easy_setopt(curl, CURLOPT_USERNAME, credentials_.accessKeyId.c_str());
	curl_easy_setopt(curl, CURLOPT_PASSWORD, credentials_.secretAccessKey.c_str());
	CURLcode rc = curl_easy_perform(curl);
	// The secret stays in libcurl's copy only as long as it is needed.
	curl_easy_setopt(curl, CURLOPT_PASSWORD, "");
	std::string why = t.timedOut ? "no answer within the timeout"
		       : *errorText   ? std::string(errorText)
				      : curl_easy_strerror(rc);
	return {int(rc), t.timedOut, t.overflow, rc == CURLE_OK ? "" : why};
}

Result<Response> Client::perform(const Request &request) const
{
	std::string url = urlFor(request);
	// radosgw refuses SigV4 without the payload's hash; libcurl signs the
	// header's value as the payload hash.
	std::string payloadHash = "x-amz-content-sha256: " + toHex(crypto::sha256(request.body));
	std::unique_ptr<curl_slist, SlistCleanup> headers(curl_slist_append(nullptr, payloadHash.c_str()));
	for (const std::string &line : request.headers)
		headers.reset(curl_slist_append(headers.release(), line.c_str()));

	auto began = Clock::now();
	bool mayHaveApplied = false;
	for (int attempt = 1;; attempt++) {
		Response response;
		response.attempts = attempt;
		response.mayHaveApplied = mayHaveApplied;
		Outcome outcome = this->attempt(request, url, headers.get(), response);
		if (outcome.overflow)
			return fail(errc::kCorrupt, "S3 endpoint " + url_.endpoint + " answered more of " +
							    request.key + " than was asked for");
		CURLcode rc = CURLcode(outcome.rc);
		bool retry = rc == CURLE_OK ? response.status / 100 == 5 : retryable(rc) && !outcome.timedOut;
		auto wait = backoff(attempt);
		if (!retry || attempt == kMaxAttempts || Clock::now() - began + wait >= timeout_) {
			if (rc == CURLE_OK)
				return response;
			std::string where = "S3 endpoint " + url_.endpoint + " (bucket " + url_.bucket + "): ";
			return fail(errc::kStoreUnavailable, where + outcome.why + " (" + tally(attempt, began) + ")");
		}
		mayHaveApplied = mayHaveApplied || mayHaveReachedServer(rc, response.status);
		std::this_thread::sleep_for(wait);
	}
}

} // namespace virtsnap::store::s3
