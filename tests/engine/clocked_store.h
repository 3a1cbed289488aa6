// A store in a directory whose clock the test moves forward (the backend's
// time is what locks and the Recycle Bin measure in), holding one snapshot
// of known bytes.
#pragma once

#include <functional>
#include <utility>

#include "engine/maintenance.h"
#include "store/local_backend.h"
#include "tests/store/fault_backend.h"
#include "tests/store/store_test_util.h"

namespace virtsnap::engine {

class ClockedBackend : public store::test::FaultBackend
{
public:
	ClockedBackend(std::unique_ptr<store::Backend> inner, std::shared_ptr<std::chrono::seconds> ahead)
		: FaultBackend(std::move(inner), std::make_shared<store::test::FaultInjector>()), ahead_(std::move(ahead))
	{
	}
	Result<std::chrono::system_clock::time_point> now() override
	{
		auto t = inner().now();
		if (!t)
			return t;
		return *t + *ahead_;
	}
	// Another host's doing, just before an object is removed.
	Result<void> remove(const std::string &name) override
	{
		if (auto hook = std::exchange(beforeRemove, nullptr))
			hook(name);
		return FaultBackend::remove(name);
	}
	std::function<void(const std::string &)> beforeRemove;

private:
	std::shared_ptr<std::chrono::seconds> ahead_;
};

class ClockedStoreTest : public store::test::StoreDirTest
{
protected:
	static constexpr uint32_t kChunk = 64 * 1024;
	static constexpr uint64_t kSlots = 4;
	const std::string id_ = "snap-0123456789abcdef0";

	void SetUp() override
	{
		auto plain = initAndOpen(kChunk);
		ASSERT_TRUE(plain);
		plain.reset();
		auto backend = std::make_unique<ClockedBackend>(std::make_unique<store::LocalBackend>(storeDir()), ahead_);
		backend_ = backend.get();
		auto opened = store::Store::open(std::move(backend), keyFile());
		ASSERT_TRUE(opened) << store::test::describe(opened);
		store_ = std::move(*opened);
		codec_ = store_->newCodec();
		ASSERT_NO_FATAL_FAILURE(save(id_, {}, 1));
	}

	// The bytes of snapshot `seed`: kSlots random chunks.
	static Bytes disk(uint64_t seed)
	{
		Bytes out;
		for (uint64_t s = 0; s < kSlots; s++) {
			Bytes c = store::test::randomData(kChunk, seed * 100 + s);
			out.insert(out.end(), c.begin(), c.end());
		}
		return out;
	}

	// `accountId`: its owner; "" is the default account.
	void save(const std::string &id, const store::Tags &tags, uint64_t seed, const std::string &accountId = "")
	{
		Bytes bytes = disk(seed);
		store::SnapshotIndex index(bytes.size(), kChunk);
		auto writer = store_->newWriter();
		for (uint64_t s = 0; s < kSlots; s++) {
			auto c = writer->put(*codec_, std::span(bytes.data() + s * kChunk, kChunk), store::ChunkType::Data);
			ASSERT_TRUE(c) << store::test::describe(c);
			index.set(s, *c);
		}
		store::Manifest m = store::test::manifestFor(id, isoTimeNow());
		m.tags = tags;
		m.accountId = accountId;
		ASSERT_TRUE(index.save(*writer, *codec_, m));
		ASSERT_TRUE(writer->commit());
		ASSERT_TRUE(store_->putManifest(m));
	}

	void advance(std::chrono::seconds by) { *ahead_ += by; }

	store::GcReport gc()
	{
		store::GcOptions opts;
		opts.grace = std::chrono::seconds(0);
		auto r = engine::collectGarbage(*store_, opts);
		EXPECT_TRUE(r) << store::test::describe(r);
		return r ? *r : store::GcReport{};
	}

	std::shared_ptr<std::chrono::seconds> ahead_ = std::make_shared<std::chrono::seconds>(0);
	ClockedBackend *backend_ = nullptr; // store_'s
	std::unique_ptr<store::Store> store_;
	std::unique_ptr<store::ChunkCodec> codec_;
};

} // namespace virtsnap::engine
