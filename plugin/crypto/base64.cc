// Base64 through OpenSSL's EVP encoder: the EBS APIs' checksums and tokens.
#include <openssl/evp.h>

#include "crypto/crypto.h"

namespace virtsnap::crypto {

std::string base64(std::span<const uint8_t> data)
{
	std::string out(4 * ((data.size() + 2) / 3), '\0');
	int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), data.data(), int(data.size()));
	out.resize(size_t(n));
	return out;
}

std::optional<Bytes> fromBase64(std::string_view text)
{
	// EVP_DecodeBlock skips blanks and ignores padding, so the shape is
	// checked here: whole quads of the alphabet, '=' only at the end.
	if (text.empty() || text.size() % 4 != 0 || text.size() > (1u << 20))
		return std::nullopt;
	size_t pad = 0;
	for (size_t i = 0; i < text.size(); i++) {
		char c = text[i];
		bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
			     c == '/';
		if (c == '=' && i + 2 >= text.size())
			pad++;
		else if (!alpha || pad)
			return std::nullopt;
	}
	Bytes out(text.size() / 4 * 3);
	int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char *>(text.data()), int(text.size()));
	if (n < 0 || size_t(n) < pad)
		return std::nullopt;
	out.resize(size_t(n) - pad);
	// Only the canonical spelling: unused bits of the last quad set would
	// let one token be written several ways.
	if (base64(out) != text)
		return std::nullopt;
	return out;
}

} // namespace virtsnap::crypto
