#include "s3_backend.h"

#include <openssl/evp.h>

#include <algorithm>
#include <mutex>

#include "crypto/crypto.h"
#include "s3_credentials.h"
#include "s3_http.h"

namespace virtsnap::store {

namespace {

// Each object is one PUT (packs are 32 MiB; S3 takes up to 5 GiB in one),
// which S3 makes visible whole or not at all, so nothing here is multipart
// and no upload is ever left half done.
class S3Backend : public Backend
{
public:
	explicit S3Backend(std::unique_ptr<s3::Client> client) : client_(std::move(client))
	{
		const StoreUrl &url = client_->url();
		keyPrefix_ = url.prefix.empty() ? "" : url.prefix + "/";
	}

	// The bucket there, answering, and letting us in: the clear error now
	// rather than at the first write.
	Result<void> probe();

	std::string describe() const override { return client_->url().text; }
	Result<void> put(const std::string &name, std::span<const uint8_t> data) override;
	Result<void> create(const std::string &name, std::span<const uint8_t> data) override;
	Result<std::unique_ptr<ObjectWriter>> openWriter(const std::string &name) override;
	Result<Bytes> get(const std::string &name) override;
	Result<void> getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out) override;
	Result<ObjectInfo> stat(const std::string &name) override;
	Result<void> list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit) override;
	Result<void> remove(const std::string &name) override;
	Result<std::chrono::system_clock::time_point> now() override;
	Result<Swept> sweepPartial(std::chrono::seconds, bool) override { return Swept{}; }
	Result<bool> retains() override;
	Result<void> retain(const std::string &name, RetentionMode mode,
			    std::chrono::system_clock::time_point until) override;

private:
	Result<std::string> keyOf(const std::string &name) const;
	Result<s3::Response> headBucket();
	std::unexpected<Error> failure(const s3::Response &response, const std::string &action,
				       const std::string &name) const;

	std::unique_ptr<s3::Client> client_;
	std::string keyPrefix_; // "PREFIX/", or empty for the bucket's root
	// Whether the bucket has Object Lock, once it said yes: it can be
	// turned on (when the bucket is made; on AWS later too), never off.
	std::mutex objectLockMutex_;
	bool objectLock_ = false;
};

// Holds what is appended and PUTs it whole at commit(): S3 has no append,
// and one PUT is what makes the object appear atomically.
class S3Writer : public ObjectWriter
{
public:
	S3Writer(S3Backend &backend, std::string name) : backend_(backend), name_(std::move(name)) {}

	Result<void> append(std::span<const uint8_t> data) override
	{
		if (committed_)
			return fail(errc::kInternal, "append to " + name_ + " after its commit");
		buffer_.insert(buffer_.end(), data.begin(), data.end());
		return {};
	}

	Result<void> commit() override
	{
		if (committed_)
			return fail(errc::kInternal, name_ + " is committed twice");
		VS_TRY(backend_.put(name_, buffer_));
		committed_ = true;
		size_ = buffer_.size();
		Bytes().swap(buffer_);
		return {};
	}

	uint64_t size() const override { return committed_ ? size_ : buffer_.size(); }

private:
	S3Backend &backend_;
	std::string name_;
	Bytes buffer_;
	uint64_t size_ = 0;
	bool committed_ = false;
};

std::string statusText(const s3::Response &response)
{
	s3::ErrorBody body = response.error();
	std::string out = std::to_string(response.status);
	if (!body.code.empty())
		out += " " + body.code;
	if (!body.message.empty())
		out += " (" + body.message + ")";
	return out;
}

// S3 wants Content-MD5 on a retention (radosgw does not check it).
std::string contentMd5(const std::string &body)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int length = 0;
	EVP_Digest(body.data(), body.size(), digest, &length, EVP_md5(), nullptr);
	return "content-md5: " + crypto::base64(std::span<const uint8_t>(digest, length));
}

} // namespace

Result<std::string> S3Backend::keyOf(const std::string &name) const
{
	// The same names as a directory takes: curl and S3 would take "..",
	// but a store that moves between backends must not depend on it.
	if (name.empty() || name.front() == '/' || name.find("..") != std::string::npos ||
	    name.find('\0') != std::string::npos)
		return fail(errc::kInvalidParameterValue, "'" + name + "' is not an object name");
	return keyPrefix_ + name;
}

// One line per cause, naming the bucket and where it is.
std::unexpected<Error> S3Backend::failure(const s3::Response &response, const std::string &action,
					  const std::string &name) const
{
	const StoreUrl &url = client_->url();
	std::string bucket = "S3 bucket " + url.bucket + " at " + url.endpoint;
	std::string what = " (" + action + (name.empty() ? "" : " " + name) + ": " + statusText(response) + ")";
	s3::ErrorBody body = response.error();
	// A HEAD's 404 has no body to tell a missing bucket from a missing key:
	// a HEAD of the bucket itself is the one without a name.
	if (response.status == 404 && (name.empty() || body.code == "NoSuchBucket"))
		return fail(errc::kStoreUnavailable,
			    "S3 bucket " + url.bucket + " does not exist at " + url.endpoint + what);
	if (response.status == 404)
		return fail(errc::kObjectNotFound, "no object " + name + " in " + describe());
	if (response.status == 403)
		return fail(errc::kAccessDenied,
			    bucket + " refuses access: the credentials or the bucket's policy do not allow it" + what);
	if (response.status == 412)
		return fail(errc::kObjectExists, "object " + name + " exists in " + describe());
	if (response.status == 507 || body.code == "QuotaExceeded")
		return fail(errc::kNoSpace, bucket + " is full" + what);
	if (response.status / 100 == 5)
		return fail(errc::kStoreUnavailable, bucket + " keeps failing, " + std::to_string(response.attempts) +
							     " attempts" + what);
	return fail(errc::kIo, bucket + " refuses a request" + what);
}

Result<s3::Response> S3Backend::headBucket()
{
	VS_ASSIGN(s3::Response r, client_->perform(s3::Request{.method = "HEAD"}));
	if (r.status / 100 != 2)
		return failure(r, "look at the bucket", "");
	return r;
}

Result<void> S3Backend::probe()
{
	VS_TRY(headBucket());
	return {};
}

Result<void> S3Backend::put(const std::string &name, std::span<const uint8_t> data)
{
	VS_ASSIGN(std::string key, keyOf(name));
	VS_ASSIGN(s3::Response r, client_->perform(s3::Request{.method = "PUT", .key = key, .body = data}));
	if (r.status / 100 != 2)
		return failure(r, "write", name);
	return {};
}

Result<void> S3Backend::create(const std::string &name, std::span<const uint8_t> data)
{
	VS_ASSIGN(std::string key, keyOf(name));
	// S3 (and radosgw) create only if absent with If-None-Match: *, and of
	// racing creators exactly one gets 200, the others 412.
	s3::Request request{.method = "PUT", .key = key, .headers = {"if-none-match: *"}, .body = data};
	VS_ASSIGN(s3::Response r, client_->perform(request));
	if (r.status == 412 && r.mayHaveApplied) {
		// An attempt whose answer was lost may have created it: ours if
		// it holds our bytes.
		auto there = get(name);
		if (there && std::equal(there->begin(), there->end(), data.begin(), data.end()))
			return {};
	}
	if (r.status / 100 != 2)
		return failure(r, "create", name);
	return {};
}

Result<std::unique_ptr<ObjectWriter>> S3Backend::openWriter(const std::string &name)
{
	VS_TRY(keyOf(name));
	return std::unique_ptr<ObjectWriter>(std::make_unique<S3Writer>(*this, name));
}

Result<Bytes> S3Backend::get(const std::string &name)
{
	VS_ASSIGN(std::string key, keyOf(name));
	VS_ASSIGN(s3::Response r, client_->perform(s3::Request{.key = key}));
	if (r.status != 200)
		return failure(r, "read", name);
	if (r.contentLength && *r.contentLength != r.body.size())
		return fail(errc::kIo, "read " + name + " in " + describe() + ": " + std::to_string(r.body.size()) +
					       " of " + std::to_string(*r.contentLength) + " bytes came");
	return std::move(r.body);
}

Result<void> S3Backend::getRange(const std::string &name, uint64_t offset, std::span<uint8_t> out)
{
	VS_ASSIGN(std::string key, keyOf(name));
	auto pastEnd = [&] {
		return fail(errc::kCorrupt, "read " + name + " in " + describe() + ": " + std::to_string(out.size()) +
						    " bytes at offset " + std::to_string(offset) + " run past its end");
	};
	if (out.empty()) {
		// HTTP has no empty range: the object's size says whether it is one.
		VS_ASSIGN(ObjectInfo info, stat(name));
		if (offset > info.size)
			return pastEnd();
		return {};
	}
	std::string range = "range: bytes=" + std::to_string(offset) + "-" + std::to_string(offset + out.size() - 1);
	VS_ASSIGN(s3::Response r, client_->perform(s3::Request{.key = key, .headers = {range}, .into = out}));
	if (r.status == 416)
		return pastEnd();
	if (r.status / 100 != 2)
		return failure(r, "read", name);
	// A range that runs over the end comes back cut short.
	if (r.received != out.size())
		return pastEnd();
	return {};
}

Result<ObjectInfo> S3Backend::stat(const std::string &name)
{
	VS_ASSIGN(std::string key, keyOf(name));
	VS_ASSIGN(s3::Response r, client_->perform(s3::Request{.method = "HEAD", .key = key}));
	if (r.status != 200)
		return failure(r, "look up", name);
	auto modified = s3::parseHttpDate(r.lastModified);
	if (!r.contentLength || !modified)
		return fail(errc::kIo, "look up " + name + " in " + describe() +
					       ": the answer lacks Content-Length or Last-Modified");
	return ObjectInfo{name, *r.contentLength, *modified};
}

Result<void> S3Backend::list(const std::string &prefix, const std::function<void(const ObjectInfo &)> &visit)
{
	// ListObjectsV2 comes in pages of up to 1000 keys, each naming where
	// the next begins.
	std::string token;
	do {
		s3::Request request{.query = {{"list-type", "2"}, {"prefix", keyPrefix_ + prefix}}};
		if (!token.empty())
			request.query.emplace_back("continuation-token", token);
		VS_ASSIGN(s3::Response r, client_->perform(request));
		if (r.status != 200)
			return failure(r, "list", prefix.empty() ? "the store" : prefix + "*");
		auto page = s3::parseListPage(r.body);
		if (!page)
			return fail(page.error().code,
				    "list " + prefix + "* in " + describe() + ": " + page.error().message);
		for (ObjectInfo &info : page->objects) {
			if (info.name.rfind(keyPrefix_, 0) != 0)
				continue;
			info.name.erase(0, keyPrefix_.size());
			visit(info);
		}
		token = page->truncated ? page->nextContinuationToken : "";
	} while (!token.empty());
	return {};
}

Result<void> S3Backend::remove(const std::string &name)
{
	VS_ASSIGN(std::string key, keyOf(name));
	VS_ASSIGN(s3::Response r, client_->perform(s3::Request{.method = "DELETE", .key = key}));
	// S3 answers 204 for an absent key too; others may say 404.
	if (r.status / 100 != 2 && !(r.status == 404 && r.error().code != "NoSuchBucket"))
		return failure(r, "remove", name);
	return {};
}

Result<std::chrono::system_clock::time_point> S3Backend::now()
{
	// The server's clock, as Last-Modified has it: a HEAD of the bucket
	// costs one small round trip, and leases and gc ask rarely.
	VS_ASSIGN(s3::Response r, headBucket());
	auto date = s3::parseHttpDate(r.date);
	if (!date)
		return fail(errc::kIo, describe() + ": the endpoint's answer has no Date to tell the time by");
	return *date;
}

Result<bool> S3Backend::retains()
{
	std::lock_guard lock(objectLockMutex_);
	if (objectLock_)
		return true;
	VS_ASSIGN(s3::Response r, client_->perform(s3::Request{.query = {{"object-lock", ""}}}));
	std::string code = r.error().code;
	if (r.status == 200) {
		objectLock_ = s3::objectLockEnabled(r.body);
		return objectLock_;
	}
	// No configuration, or an endpoint without Object Lock (MinIO without
	// it answers the first, Garage the second), or credentials that may
	// not look (a policy made before locks used it): locks are then
	// virtsnap's alone, and say so, rather than refused.
	if ((r.status == 404 && code == "ObjectLockConfigurationNotFoundError") || r.status == 501 || r.status == 403)
		return false;
	return failure(r, "look at the Object Lock configuration", r.status == 404 ? "" : "of the bucket");
}

Result<void> S3Backend::retain(const std::string &name, RetentionMode mode, std::chrono::system_clock::time_point until)
{
	VS_ASSIGN(bool objectLock, retains());
	if (!objectLock)
		return fail(errc::kUnsupported, "S3 bucket " + client_->url().bucket + " at " + client_->url().endpoint +
							" has no Object Lock: " + name + " cannot be retained");
	VS_ASSIGN(std::string key, keyOf(name));
	VS_ASSIGN(s3::Response got, client_->perform(s3::Request{.key = key, .query = {{"retention", ""}}}));
	std::optional<s3::Retention> had;
	if (got.status == 200) {
		auto parsed = s3::parseRetention(got.body);
		if (!parsed)
			return fail(parsed.error().code, "retention of " + name + " in " + describe() + ": " +
								 parsed.error().message);
		had = *parsed;
	} else if (std::string code = got.error().code;
		   // AWS's code for an object without retention; radosgw 16 answers
		   // with the one a bucket without Object Lock has.
		   got.status != 404 ||
		   (code != "NoSuchObjectLockConfiguration" && code != "ObjectLockConfigurationNotFoundError")) {
		return failure(got, "look at the retention of", name);
	}
	// Whole seconds, rounded up where they were another's: a date even a
	// fraction earlier than the object's would shorten it, which S3 refuses.
	s3::Retention want{mode, std::chrono::ceil<std::chrono::seconds>(until)};
	if (had) {
		std::chrono::system_clock::time_point hadUntil = std::chrono::ceil<std::chrono::seconds>(had->until);
		if (want.until <= hadUntil && (had->mode == RetentionMode::Compliance || mode == RetentionMode::Governance))
			return {};
		want.until = std::max(want.until, hadUntil);
		if (had->mode == RetentionMode::Compliance)
			want.mode = RetentionMode::Compliance;
	}
	std::string body = s3::retentionXml(want);
	s3::Request put{.method = "PUT", .key = key, .query = {{"retention", ""}}, .headers = {contentMd5(body)},
			.body = std::span<const uint8_t>((const uint8_t *)body.data(), body.size())};
	// Governance made compliance is a change S3 lets only a bypass make.
	if (had && had->mode == RetentionMode::Governance && want.mode == RetentionMode::Compliance)
		put.headers.push_back("x-amz-bypass-governance-retention: true");
	VS_ASSIGN(s3::Response r, client_->perform(put));
	if (r.status / 100 != 2)
		return failure(r, "retain", name);
	return {};
}

Result<std::unique_ptr<Backend>> openS3Backend(const StoreUrl &url, const BackendSettings &settings)
{
	VS_ASSIGN(s3::Credentials credentials, s3::loadCredentials(settings));
	auto backend = std::make_unique<S3Backend>(
		std::make_unique<s3::Client>(url, std::move(credentials), settings.timeout));
	VS_TRY(backend->probe());
	return std::unique_ptr<Backend>(std::move(backend));
}

Result<void> createS3Bucket(const StoreUrl &url, const BackendSettings &settings, bool objectLock)
{
	VS_ASSIGN(s3::Credentials credentials, s3::loadCredentials(settings));
	s3::Client client(url, std::move(credentials), settings.timeout);
	s3::Request request{.method = "PUT"};
	if (objectLock)
		request.headers.push_back("x-amz-bucket-object-lock-enabled: true");
	VS_ASSIGN(s3::Response r, client.perform(request));
	if (r.status / 100 == 2 || r.error().code == "BucketAlreadyOwnedByYou")
		return {};
	return fail(r.status == 403 ? errc::kAccessDenied : errc::kIo,
		    "create S3 bucket " + url.bucket + " at " + url.endpoint + ": " + statusText(r));
}

} // namespace virtsnap::store
