// The block tokens of the EBS direct APIs: opaque, authenticated, and
// expiring. A token is minted by a listing and presented to
// get-snapshot-block; it binds the snapshot, the block index, the block's
// content (block_map.h's identity) and its expiry, under a key derived from
// the store's key domain, so only this store's listings can have made it.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "crypto/crypto.h"
#include "store/key_domain.h"

namespace virtsnap::engine {

using TimePoint = std::chrono::system_clock::time_point;

// As on EBS.
inline constexpr std::chrono::seconds kBlockTokenLifetime = std::chrono::hours(24 * 7);

class BlockTokens
{
public:
	explicit BlockTokens(const store::KeyDomain &domain);

	// base64(version 1 | expiry, whole seconds since the epoch, u64 LE | MAC 32)
	std::string mint(std::string_view snapshotId, uint64_t block, const crypto::Digest &identity,
			 TimePoint expiry) const;
	// InvalidParameterValue (EBS: ValidationException, INVALID_BLOCK_TOKEN)
	// for a token that is not one of ours for this snapshot, block and
	// content, or whose expiry is not after `now`. The MAC is checked
	// first, so an expiry edited into the future fails as a forgery.
	Result<void> check(std::string_view token, std::string_view snapshotId, uint64_t block,
			   const crypto::Digest &identity, TimePoint now) const;

private:
	crypto::Digest mac(std::string_view snapshotId, uint64_t block, const crypto::Digest &identity,
			   uint64_t expiry) const;

	crypto::SecretKey key_;
};

} // namespace virtsnap::engine
