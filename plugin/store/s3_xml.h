// The XML an S3 endpoint answers with: ListObjectsV2 pages and error
// bodies, read with libxml2 (no network access, no entities expanded).
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backend.h"

namespace virtsnap::store::s3 {

// One page of a ListObjectsV2 answer. ObjectInfo::name is the key as the
// bucket has it; the backend takes its prefix off.
struct ListPage {
	std::vector<ObjectInfo> objects;
	bool truncated = false;
	std::string nextContinuationToken;
};

// Corrupt (naming the endpoint's answer) when it is not a ListBucketResult.
Result<ListPage> parseListPage(std::span<const uint8_t> xml);

// <Error><Code>NoSuchKey</Code><Message>...</Message></Error>; empty
// strings when the body is not one (a HEAD has no body at all).
struct ErrorBody {
	std::string code, message;
};
ErrorBody parseErrorBody(std::span<const uint8_t> xml);

// An object's Object Lock retention (GET ?retention):
// <Retention><Mode>GOVERNANCE|COMPLIANCE</Mode><RetainUntilDate>...;
// Corrupt when the answer is not one.
struct Retention {
	RetentionMode mode = RetentionMode::Governance;
	std::chrono::system_clock::time_point until;
};
Result<Retention> parseRetention(std::span<const uint8_t> xml);
std::string retentionXml(const Retention &retention);
// Whether a bucket's Object Lock configuration (GET ?object-lock) says
// <ObjectLockEnabled>Enabled</ObjectLockEnabled>.
bool objectLockEnabled(std::span<const uint8_t> xml);

// "2026-12-04T20:17:21.044Z", as listings give LastModified.
std::optional<std::chrono::system_clock::time_point> parseIsoTime(const std::string &text);

// libxml2 wants one initialisation before threads use it.
void initXml();

} // namespace virtsnap::store::s3
