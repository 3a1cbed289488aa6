// Seeds for the store's fuzz targets, made by the store's own code: a store
// is initialised, two snapshots (full, then incremental) are written through
// ChunkWriter and SnapshotIndex::save, and the objects they left are read
// back. Each is written out in the form its target reads: plaintext where a
// target seals its input itself, and re-sealed under the targets' fixed test
// keys where it feeds its input to the sealed reader as found.
//
//   fuzz-make-seeds OUTDIR   (writes OUTDIR/<target>/<name>)
#include <zstd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "hypervisor/domain_xml.h"
#include "store/chunk_writer.h"
#include "store/pack.h"
#include "store/snapshot_index.h"
#include "store_fuzz_util.h"

using namespace virtsnap;
using namespace virtsnap::store;
namespace fs = std::filesystem;

namespace {

fs::path outDir;

template<typename T>
T need(Result<T> r, const char *what)
{
	if (!r) {
		std::fprintf(stderr, "make-seeds: %s: %s\n", what, r.error().message.c_str());
		std::exit(1);
	}
	return std::move(*r);
}

void need(Result<void> r, const char *what)
{
	if (!r) {
		std::fprintf(stderr, "make-seeds: %s: %s\n", what, r.error().message.c_str());
		std::exit(1);
	}
}

void emit(const std::string &target, const std::string &name, std::span<const uint8_t> bytes)
{
	fs::create_directories(outDir / target);
	std::ofstream(outDir / target / name, std::ios::binary).write((const char *)bytes.data(), long(bytes.size()));
}

void emit(const std::string &target, const std::string &name, std::string_view text)
{
	emit(target, name, std::span((const uint8_t *)text.data(), text.size()));
}

Bytes readAll(const fs::path &path)
{
	std::ifstream in(path, std::ios::binary);
	return Bytes(std::istreambuf_iterator<char>(in), {});
}

// A disk of `slots` chunks with some zero, some repeated, some unique.
Manifest snapshot(Store &store, const std::string &id, const std::string &parent, int generation)
{
	auto codec = store.newCodec();
	auto writer = store.newWriter();
	const uint64_t volumeSize = 40ull * store.chunkSize() + 1234;
	SnapshotIndex index(volumeSize, store.chunkSize());
	for (uint64_t slot = 0; slot < index.slots(); slot++) {
		if (slot % 5 == 0)
			continue;
		Bytes data(index.slotLength(slot), uint8_t(slot % 7 == 0 ? 0x55 : slot + generation));
		if (slot % 3 == 0)
			for (size_t i = 0; i < data.size(); i++)
				data[i] = uint8_t((i * 2654435761u + slot) >> 13);
		index.set(slot, need(writer->put(*codec, data, ChunkType::Data), "put"));
	}
	Manifest m;
	m.snapshotId = id;
	m.volumeId = "vol-0123456789abcdef0";
	m.volume = {"uuid:4f1e0c3a-9d2b-4c61-8f0e-2a7b5c9d1e3f", "vm1", "vda", "qcow2"};
	m.parentSnapshotId = parent;
	m.startTime = "2026-12-04T22:00:0" + std::to_string(generation) + "Z";
	m.completionTime = "2026-12-04T22:00:1" + std::to_string(generation) + "Z";
	m.description = "nightly";
	m.tags = {{"Name", "web"}, {"team", "ops"}};
	m.consistency = generation ? "application" : "crash";
	m.captureMode = parent.empty() ? "full" : "incremental";
	m.captureReason = parent.empty() ? "no earlier snapshot" : "";
	m.freezeMillis = generation ? 42 : -1;
	m.snapshotSetId = "ssid-0123456789abcdef0";
	m.ownerId = "0";
	m.bitmapName = "virtsnap-" + id;
	need(index.save(*writer, *codec, m), "save index");
	need(writer->commit(), "commit");
	m.stats = {volumeSize, writer->bytesAdded(), writer->chunksNew(), writer->chunksReused(), 8};
	need(store.putManifest(m), "put manifest");
	return m;
}

// What virtsnap gives libvirt, which libvirt hands back when asked.
void libvirtXml()
{
	using namespace virtsnap::hypervisor;
	emit("domain-xml", "checkpoint.xml", checkpointXml({"virtsnap-snap-a", {{"vda", true}, {"vdb", false}}, {}}));
	emit("domain-xml", "checkpoint-redefined.xml",
	     checkpointXml({"virtsnap-snap-b", {{"vda", true}}, 1700000000}));
	BackupDisk full{"vda", true, "vda", "", "", "/var/tmp/d/vda.scratch", ""};
	BackupDisk incremental{"vdb", true, "vdb", "virtsnap-snap-a", "backup-vdb", "/var/tmp/d/vdb.scratch", ""};
	BackupDisk skipped{"sda", false, "", "", "", "", ""};
	emit("domain-xml", "backup.xml", backupXml("/var/tmp/d/nbd.sock", {full, incremental, skipped}));
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 2) {
		std::fprintf(stderr, "usage: fuzz-make-seeds OUTDIR\n");
		return 2;
	}
	outDir = argv[1];
	fs::path storeDir = outDir / "store", keyFile = outDir / "keys" / "store.key";
	bool created = false;
	need(Store::init(storeDir, keyFile, 4096, &created), "init");
	auto store = need(Store::open(storeDir, keyFile), "open");
	emit("store-config", "config.json", readAll(storeDir / "config.json"));
	emit("key-file", "store.key", readAll(keyFile));

	const KeyDomain &test = fuzz::testDomain();
	const crypto::SecretKey master = fuzz::testKey(7);
	Bytes keys(test.encKey.bytes().begin(), test.encKey.bytes().end());
	keys.insert(keys.end(), test.idKey.bytes().begin(), test.idKey.bytes().end());
	emit("key-domain", "keys", keys);
	emit("key-domain", "sealed", need(wrapDomain(test, master, "0011223344556677"), "wrap"));

	std::vector<Manifest> manifests{snapshot(*store, "snap-0000000000000000a", "", 0),
					snapshot(*store, "snap-0000000000000000b", "snap-0000000000000000a", 1)};
	auto codec = store->newCodec();
	ChunkCodec testCodec(test);
	for (const Manifest &m : manifests) {
		std::string text = serializeManifest(m);
		emit("manifest", m.snapshotId + ".json", text);
		// Grown by 255 pages of zeros, written as a run (manifest version
		// 2), as a store of format version 3 writes it.
		Manifest sparse = m;
		sparse.volumeSize = 256ull * kIndexPageEntries * m.chunkSize;
		sparse.indexPages.resize(256, kZeroChunk);
		emit("manifest", m.snapshotId + "-runs.json", serializeManifest(sparse, true));
		emit("manifest", m.snapshotId + ".sealed",
		     need(sealObject(ObjectType::Manifest, test.id, test.encKey, "snap-0123456789abcdef0",
				     std::span((const uint8_t *)text.data(), text.size())), "seal"));
		std::string withPages = text + "\n";
		for (size_t i = 0; i < m.indexPages.size(); i++) {
			Bytes page;
			if (!isZeroId(m.indexPages[i]))
				page = need(store->readChunk(*codec, m.indexPages[i]), "read page");
			withPages += (i ? "PAGE" : "") + std::string(page.begin(), page.end());
		}
		emit("snapshot-index", m.snapshotId, withPages);
	}

	int packs = 0, blobs = 0;
	for (const auto &entry : fs::recursive_directory_iterator(storeDir / "packs")) {
		bool isIndex = false;
		auto id = packIdOf(fs::relative(entry.path(), storeDir).string(), &isIndex);
		if (!id || !isIndex)
			continue;
		Bytes plain = need(openObject(ObjectType::PackIndex, store->domain().encKey, toHex(*id),
					      readAll(entry.path())),
				   "open index");
		emit("pack-index", "index-" + std::to_string(packs) + ".plain", plain);
		emit("pack-index", "index-" + std::to_string(packs) + ".sealed",
		     need(sealObject(ObjectType::PackIndex, test.id, test.encKey, "000102030405060708090a0b0c0d0e0f",
				     plain),
			  "seal"));
		PackIndex index = need(parsePackIndex(plain), "parse index");
		Bytes pack = readAll(storeDir / packName(*id));
		for (const PackEntry &e : index.entries) {
			if (blobs >= 12)
				break;
			Bytes chunk = need(codec->decode(e.id, std::span(pack).subspan(e.offset, e.length)), "decode");
			Bytes blob;
			need(testCodec.encode(testCodec.idOf(chunk), e.type, chunk, blob), "encode");
			emit("chunk-blob", "blob-" + std::to_string(blobs), blob);
			// The target's sealed form: flags (bit0 zstd), raw length, body.
			Bytes body(ZSTD_compressBound(chunk.size()) + 5);
			body[0] = 1;
			putLe32(body.data() + 1, uint32_t(chunk.size()));
			body.resize(5 + ZSTD_compress(body.data() + 5, body.size() - 5, chunk.data(), chunk.size(), 1));
			emit("chunk-blob", "zbody-" + std::to_string(blobs++), body);
		}
		packs++;
	}
	libvirtXml();
	std::printf("make-seeds: %d packs, %d blobs, %zu manifests in %s\n", packs, blobs, manifests.size(),
		    outDir.c_str());
	return 0;
}
