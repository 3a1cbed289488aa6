// One S3 request over libcurl, signed with AWS SigV4 by libcurl itself
// (CURLOPT_AWS_SIGV4), retried on what a retry can fix. The S3 backend is
// built on it; it knows buckets and keys but nothing of the store.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend_url.h"
#include "core/bytes.h"
#include "s3_credentials.h"
#include "s3_xml.h"

struct curl_slist;

namespace virtsnap::store::s3 {

struct Request {
	std::string method = "GET"; // GET, PUT, HEAD or DELETE
	std::string key{};          // the object's key in the bucket; empty: the bucket
	// Parameters as they are; the client encodes and sorts them, as SigV4
	// wants (libcurl 7.88 signs the query string as given).
	std::vector<std::pair<std::string, std::string>> query{};
	// "name: value" lines beyond the ones every request carries.
	std::vector<std::string> headers{};
	std::span<const uint8_t> body{}; // a PUT's payload
	// When set, a 2xx answer's body lands here (a ranged read) instead of
	// in Response::body; more than fits is an error.
	std::optional<std::span<uint8_t>> into{};
};

struct Response {
	long status = 0;
	Bytes body;            // an error's XML, or a GET's data unless Request::into
	uint64_t received = 0; // bytes written into Request::into
	std::optional<uint64_t> contentLength;
	std::string date, lastModified, contentRange;
	std::string versionId; // x-amz-version-id, on a versioned bucket
	int attempts = 0;
	// An earlier attempt failed in a way that may have let the server act
	// on it (the connection broke after the request went out): a create
	// refused now may be our own.
	bool mayHaveApplied = false;

	ErrorBody error() const { return parseErrorBody(body); }
};

class Client
{
public:
	Client(StoreUrl url, Credentials credentials, std::chrono::seconds timeout);

	// The answer, whatever its status, once retries have run out: a few
	// attempts with backoff for connection failures and 5xx (503 SlowDown
	// too), all within the timeout. StoreUnavailable when no answer came.
	// Safe to call from several threads at once.
	Result<Response> perform(const Request &request) const;

	const StoreUrl &url() const { return url_; }
	std::chrono::seconds timeout() const { return timeout_; }

private:
	struct Outcome {
		int rc;              // libcurl's CURLcode
		bool timedOut, overflow;
		std::string why;     // why no answer came, when none did
	};
	Outcome attempt(const Request &request, const std::string &url, curl_slist *headers, Response &response) const;
	std::string urlFor(const Request &request) const;

	StoreUrl url_;
	Credentials credentials_;
	std::string sigv4_; // "aws:amz:REGION:s3"
	std::chrono::seconds timeout_;
};

// An HTTP date ("Fri, 04 Dec 2026 20:17:21 GMT") as a time point.
std::optional<std::chrono::system_clock::time_point> parseHttpDate(const std::string &text);

} // namespace virtsnap::store::s3
