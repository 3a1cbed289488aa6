// Key domain files under a fixed master key: as found (the input is the
// sealed file) and past authentication (the input is the sealed content).
#include "store/key_domain.h"
#include "store_fuzz_util.h"

using namespace virtsnap;

namespace {

const std::string kStoreId = "0011223344556677";

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const crypto::SecretKey master = fuzz::testKey(7);
	std::span<const uint8_t> input(data, size);
	(void)store::objectDomain(input);
	(void)store::unwrapDomain(input, master, kStoreId);

	store::DomainId id = fuzz::testDomain().id;
	auto sealed = store::sealObject(store::ObjectType::KeyDomain, id, master,
					"key-domain/" + kStoreId + "/" + toHex(id), input);
	fuzz::check(sealed.has_value(), "sealing works");
	auto domain = store::unwrapDomain(*sealed, master, kStoreId);
	fuzz::check(domain.has_value() == (size == 2 * crypto::kKeySize), "a domain opens iff it holds two keys");
	if (domain) {
		auto wrapped = store::wrapDomain(*domain, master, kStoreId);
		fuzz::check(wrapped && store::unwrapDomain(*wrapped, master, kStoreId).has_value(),
			    "an opened domain wraps again");
	}
	return 0;
}
