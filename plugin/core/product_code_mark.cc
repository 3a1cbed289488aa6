#include "product_code_mark.h"

#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <string>

namespace virtsnap {

namespace {

// Far more than any image carries (an id is at most 64 characters); a
// longer mark is not ours.
constexpr size_t kMaxMarkBytes = 4096;

bool isMarkSeparator(char c)
{
	return c == ' ' || c == '\n' || c == '\t';
}

Result<std::vector<ProductCode>> parseMark(const std::filesystem::path &path, std::string_view text)
{
	std::vector<ProductCode> codes;
	size_t at = 0;
	while (at < text.size()) {
		if (isMarkSeparator(text[at])) {
			at++;
			continue;
		}
		size_t end = at;
		while (end < text.size() && !isMarkSeparator(text[end]))
			end++;
		auto code = parseProductCode(text.substr(at, end - at));
		if (!code)
			return fail(code.error().code,
				    "the " + std::string(kProductCodeMarkAttribute) + " of " + path.string() + ": " +
					    code.error().message);
		addProductCodes(codes, {*code});
		at = end;
	}
	return codes;
}

} // namespace

Result<void> writeProductCodeMark(int fd, const std::vector<ProductCode> &codes)
{
	std::string text;
	for (const ProductCode &code : codes)
		text += (text.empty() ? "" : " ") + toString(code);
	// What readProductCodeMark would refuse is not written: the file would
	// carry a mark that every capture then ignores.
	if (text.size() > kMaxMarkBytes)
		return fail(errc::kInvalidParameterValue, std::to_string(codes.size()) + " product codes take " +
								  std::to_string(text.size()) + " bytes, more than a mark holds (" +
								  std::to_string(kMaxMarkBytes) + ")");
	if (::fsetxattr(fd, kProductCodeMarkAttribute, text.data(), text.size(), 0) == 0)
		return {};
	const int err = errno;
	if (err == ENOTSUP)
		return fail(errc::kUnsupported, "its filesystem keeps no user extended attributes");
	return failErrno(std::string("set ") + kProductCodeMarkAttribute, err);
}

Result<std::vector<ProductCode>> readProductCodeMark(const std::filesystem::path &path)
{
	struct stat st {};
	if (::stat(path.c_str(), &st) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return std::vector<ProductCode>();
		return failErrno("stat " + path.string(), errno);
	}
	if (!S_ISREG(st.st_mode))
		return std::vector<ProductCode>();
	std::string text(kMaxMarkBytes, '\0');
	ssize_t n = ::getxattr(path.c_str(), kProductCodeMarkAttribute, text.data(), text.size());
	if (n < 0) {
		const int err = errno;
		if (err == ENODATA || err == ENOTSUP || err == ENOENT)
			return std::vector<ProductCode>();
		if (err == ERANGE)
			return fail(errc::kInvalidParameterValue, "the " + std::string(kProductCodeMarkAttribute) + " of " +
									  path.string() + " is longer than " +
									  std::to_string(kMaxMarkBytes) + " bytes");
		return failErrno("read the " + std::string(kProductCodeMarkAttribute) + " of " + path.string(), err);
	}
	text.resize(size_t(n));
	return parseMark(path, text);
}

} // namespace virtsnap
