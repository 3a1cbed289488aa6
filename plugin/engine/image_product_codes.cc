#include "image_product_codes.h"

#include "core/product_code_mark.h"

namespace virtsnap::engine {

Result<std::vector<ProductCode>> imageProductCodes(const std::string &filename)
{
	if (filename.empty() || filename.front() != '/')
		return std::vector<ProductCode>();
	// An image QEMU was handed by descriptor (/proc/self/fd/N, libvirt's
	// /dev/fdset/N) names, in this process, another file or none.
	if (filename.starts_with("/proc/") || filename.starts_with("/dev/"))
		return std::vector<ProductCode>();
	return readProductCodeMark(filename);
}

bool addImageProductCodes(VolumeRecord &volume, const hypervisor::DiskInfo &disk,
			  const std::function<void(const std::string &)> &warn)
{
	auto marked = imageProductCodes(disk.filename);
	if (!marked) {
		if (warn)
			warn("disk " + disk.diskId + " of volume " + volume.volumeId +
			     ": its image's product codes are ignored: " + marked.error().toString());
		return false;
	}
	const size_t had = volume.productCodes.size();
	addProductCodes(volume.productCodes, *marked);
	return volume.productCodes.size() != had;
}

void markRestoredImage(int fd, const std::filesystem::path &target, const std::vector<ProductCode> &codes,
		       const std::function<void(const std::string &)> &warn)
{
	if (codes.empty())
		return;
	auto marked = writeProductCodeMark(fd, codes);
	if (!marked && warn)
		warn("the product codes of " + target.string() + " could not be kept with it: " + marked.error().message);
}

} // namespace virtsnap::engine
