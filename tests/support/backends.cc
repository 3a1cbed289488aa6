#include "backends.h"

#include <atomic>
#include <filesystem>

#include "test_env.h"

namespace virtsnap::test {

namespace {

// Local stores live under one directory per test binary, removed with it.
class LocalRoot
{
public:
	std::string fresh()
	{
		static std::atomic<int> next{0};
		std::string dir = root_.path() + "/store-" + std::to_string(next++);
		return dir;
	}

private:
	TempDir root_{"vs-backend"};
};

std::vector<BackendUnderTest> &registry()
{
	static std::vector<BackendUnderTest> backends = [] {
		std::vector<BackendUnderTest> all;
		all.push_back({"local", [](std::string *) {
				       static LocalRoot root;
				       return root.fresh();
			       }, {}});
		return all;
	}();
	return backends;
}

} // namespace

const std::vector<std::string> &backendNames()
{
	static std::vector<std::string> names = [] {
		std::vector<std::string> out;
		for (const BackendUnderTest &b : registry())
			out.push_back(b.name);
		return out;
	}();
	return names;
}

const BackendUnderTest *backendNamed(const std::string &name)
{
	for (const BackendUnderTest &b : registry())
		if (b.name == name)
			return &b;
	return nullptr;
}

std::unique_ptr<store::Backend> freshBackend(const std::string &name, std::string *url, std::string *why)
{
	const BackendUnderTest *b = backendNamed(name);
	if (!b) {
		*why = "no such backend";
		return nullptr;
	}
	*url = b->freshUrl(why);
	if (url->empty())
		return nullptr;
	auto backend = store::openBackend(*url, b->settings);
	if (!backend) {
		*why = backend.error().toString();
		return nullptr;
	}
	return std::move(*backend);
}

} // namespace virtsnap::test
