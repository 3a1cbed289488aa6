#include "block_tokens.h"

#include "core/ids.h"

namespace virtsnap::engine {

namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kTokenBytes = 1 + 8 + crypto::kDigestSize;

} // namespace

// Derived from the domain's id key with a label of its own (crypto.h's
// deriveKey): neither the master key nor a key with another use signs
// tokens, and a domain's tokens mean nothing to another domain.
BlockTokens::BlockTokens(const store::KeyDomain &domain)
	: key_(crypto::deriveKey(domain.idKey, "virtsnap block token v1"))
{
}

crypto::Digest BlockTokens::mac(std::string_view snapshotId, uint64_t block, const crypto::Digest &identity,
				uint64_t expiry) const
{
	// Fixed-width fields after a length-prefixed id: no two inputs spell
	// the same text.
	Bytes text(1 + 4 + snapshotId.size() + 8 + identity.size() + 8);
	uint8_t *p = text.data();
	*p++ = kVersion;
	putLe32(p, uint32_t(snapshotId.size()));
	p += 4;
	std::copy(snapshotId.begin(), snapshotId.end(), p);
	p += snapshotId.size();
	putLe64(p, block);
	p += 8;
	std::copy(identity.begin(), identity.end(), p);
	p += identity.size();
	putLe64(p, expiry);
	return crypto::Hmac(key_).digest(text);
}

std::string BlockTokens::mint(std::string_view snapshotId, uint64_t block, const crypto::Digest &identity,
			      TimePoint expiry) const
{
	auto secs = std::chrono::duration_cast<std::chrono::seconds>(expiry.time_since_epoch()).count();
	uint64_t at = secs < 0 ? 0 : uint64_t(secs);
	Bytes token(kTokenBytes);
	token[0] = kVersion;
	putLe64(token.data() + 1, at);
	crypto::Digest m = mac(snapshotId, block, identity, at);
	std::copy(m.begin(), m.end(), token.begin() + 9);
	return crypto::base64(token);
}

Result<void> BlockTokens::check(std::string_view token, std::string_view snapshotId, uint64_t block,
				const crypto::Digest &identity, TimePoint now) const
{
	std::string what = "--block-token for block " + std::to_string(block) + " of " + std::string(snapshotId);
	auto bytes = crypto::fromBase64(token);
	if (!bytes || bytes->size() != kTokenBytes || (*bytes)[0] != kVersion)
		return fail(errc::kInvalidParameterValue, what + " is not a block token");
	uint64_t expiry = getLe64(bytes->data() + 1);
	crypto::Digest want = mac(snapshotId, block, identity, expiry);
	if (!crypto::equalConstantTime(want, std::span(bytes->data() + 9, crypto::kDigestSize)))
		return fail(errc::kInvalidParameterValue,
			    what + " is not valid: it was not issued for this snapshot and block");
	auto nowSecs = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
	if (nowSecs >= 0 && uint64_t(nowSecs) >= expiry)
		return fail(errc::kInvalidParameterValue,
			    what + " expired at " + isoTime(TimePoint(std::chrono::seconds(expiry))) +
				    "; list the blocks again for a new one");
	return {};
}

} // namespace virtsnap::engine
